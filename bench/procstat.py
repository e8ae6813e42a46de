"""CPU seconds of processes (and their process trees) from `/proc/<pid>/stat` deltas.

Why /proc and not psutil's `cpu_times()`: the same numbers, but read here in
one place with the rule that makes a tree's total exact. A process tree's CPU
so far is the sum, over its live processes, of `utime + stime + cutime +
cstime` (fields 14-17 of `/proc/<pid>/stat`): a child that exits is reaped
by its parent, whose `cutime`/`cstime` then hold the child's whole CPU time.
So a Postgres backend that starts or ends during a measured window counts
exactly once, and a service process without children is simply its own
`utime + stime`.

`Tree` is one named process tree (a service, Redis, the Postgres postmaster
and its backends, this very load client); `Meter` reads several at once and
answers the CPU seconds each used since it was created.

Not a bench script (no `main()`): cpu.py, accept.py and density.py import it
as a sibling.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards), or None."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    """ppid -> pids, for every process on the machine (one scan of /proc)."""
    out: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def tree_ticks(pid: int, children: Mapping[int, list[int]] | None = None) -> int:
    """utime+stime+cutime+cstime summed over the live process tree rooted at `pid`."""
    kids = _children() if children is None else children
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        fields = _stat_fields(current)
        if fields is None:
            continue
        # fields[0] is `state` (field 3): utime..cstime are fields 14-17
        total += sum(int(x) for x in fields[11:15])
        todo.extend(kids.get(current, []))
    return total


def own_ticks(pid: int) -> int:
    """utime+stime of one process (a client whose children are measured apart)."""
    fields = _stat_fields(pid)
    return 0 if fields is None else int(fields[11]) + int(fields[12])


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, from /proc/<pid>/statm."""
    try:
        resident = int((PROC / str(pid) / "statm").read_text().split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0
    return resident * os.sysconf("SC_PAGE_SIZE")


class Meter:
    """CPU seconds of named process trees since the meter was created.

    `roots`: name -> pid of the tree's root. `own`: names whose root is
    measured without its children (this load client, whose children are the
    stack's own processes)."""

    def __init__(self, roots: Mapping[str, int], *, own: frozenset[str] = frozenset()) -> None:
        self.roots = dict(roots)
        self.own = own
        self.start = self._read()

    def _read(self) -> dict[str, int]:
        kids = _children()
        return {
            name: own_ticks(pid) if name in self.own else tree_ticks(pid, kids)
            for name, pid in self.roots.items()
        }

    def used(self) -> dict[str, float]:
        """CPU seconds of each tree since the meter was created."""
        end = self._read()
        return {name: (end[name] - self.start[name]) * TICK_S for name in self.roots}
