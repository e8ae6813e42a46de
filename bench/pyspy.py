"""py-spy profiles of the stack's services under load, and their hot spots.

`Profiler` starts `py-spy record --format speedscope` on each named process
(a load runs meanwhile), stops them and waits for the files; `hot_spots`
reads one speedscope file back and answers where the CPU went: the top
functions by SELF time (the frame on top of the stack when sampled), the top
by INCLUSIVE time (on the stack at all), and self time by package
(anthropic, httpx, pydantic, asyncio, logging, ...), each as a share of the
samples.

Why these three views: self time names what burns the cycles (a JSON
encoder, a socket write, the event loop's own bookkeeping); inclusive time
names the code path that calls it (the SDK's stream iteration, a route);
the package view answers questions such as "how much is logging".

Decisions:
- Samples are taken with `--function` (aggregated by function, not by line)
  and without `--idle`: a thread parked in epoll is not CPU. py-spy still
  reports some waiting threads as busy (a thread pool's worker blocked on
  its queue, a heartbeat thread in a timed `Event.wait`, a selector's poll):
  samples whose top frame is one of `WAITS` are left out.
- py-spy pauses the process for each sample by default; profiled loads are
  kept apart from the ones whose CPU and latency are reported (the callers
  run a separate profiled round), so the profiler costs nothing measured.
- The files are kept (bench/artefacts/, gitignored: a few MB each) to open
  in speedscope; the summary goes into results.json.

Not a bench script (no `main()`): cpu.py imports it as a sibling.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PY_SPY = Path(sys.executable).parent / "py-spy"
TOP = 10
ROOT_SHARE = 0.95  # inclusive shares above this are the process's entry frames

# Longest prefixes first: the first that a frame's file path contains names its package.
PACKAGES = [
    ("/relay_core/", "relay_core"),
    ("/relay_agent/", "relay_agent"),
    ("/relay_runner/", "relay_runner"),
    ("/relay_state/", "relay_state"),
    ("/relay_gateway/", "relay_gateway"),
    ("/relay_events/", "relay_events"),
    ("/site-packages/", ""),  # the distribution's own folder name follows
    ("/asyncio/", "asyncio"),
    ("/logging/", "logging"),
    ("/json/", "json"),
]


def package_of(path: str) -> str:
    for marker, name in PACKAGES:
        at = path.find(marker)
        if at < 0:
            continue
        if name:
            return name
        rest = path[at + len(marker) :]
        return rest.split("/", 1)[0].removesuffix(".py")
    if "/lib/python3" in path:
        return "stdlib:" + Path(path).stem
    return path or "?"


class Profiler:
    """py-spy on each named pid until `stop()`; `wait()` returns the files written."""

    def __init__(self, pids: dict[str, int], out_dir: Path, *, rate: int = 200) -> None:
        if not PY_SPY.exists() and shutil.which("py-spy") is None:
            raise RuntimeError("py-spy is not installed: run `make venv` (a dev dependency)")
        out_dir.mkdir(parents=True, exist_ok=True)
        exe = str(PY_SPY) if PY_SPY.exists() else "py-spy"
        self.files = {name: out_dir / f"{name}.speedscope.json" for name in pids}
        self.procs = {
            name: self._start(exe, pid, self.files[name], rate) for name, pid in pids.items()
        }

    @staticmethod
    def _start(exe: str, pid: int, out: Path, rate: int) -> subprocess.Popen[bytes]:
        argv = [exe, "record", "--format", "speedscope", "--function", "--rate", str(rate),
                "--pid", str(pid), "--output", str(out)]  # fmt: skip
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        """End the sampling: py-spy writes its file on SIGINT and exits."""
        for proc in self.procs.values():
            proc.send_signal(signal.SIGINT)

    def wait(self, timeout_s: float = 120.0) -> dict[str, Path]:
        written = {}
        for name, proc in self.procs.items():
            try:
                _, err = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                continue
            if proc.returncode == 0 and self.files[name].exists():
                written[name] = self.files[name]
            else:
                print(f"py-spy on {name} failed: {err.decode(errors='replace')[-300:]}")
        return written


# (function, file name) of top frames that are a thread waiting, not working.
WAITS = {
    ("Condition.wait", "threading.py"),
    ("_worker", "thread.py"),
    ("EpollSelector.select", "selectors.py"),
    ("Queue.get", "queue.py"),
}


def _waiting(frame: dict[str, Any]) -> bool:
    return (str(frame.get("name")), Path(str(frame.get("file", ""))).name) in WAITS


def _frame_label(frame: dict[str, Any]) -> str:
    path = str(frame.get("file", ""))
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else "?"
    return f"{frame.get('name', '?')} ({short})"


def hot_spots(path: Path, top: int = TOP) -> dict[str, Any]:
    """The top functions by self and by inclusive share, and self share by package."""
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    self_w: Counter[int] = Counter()
    incl_w: Counter[int] = Counter()
    total = 0.0
    for profile in doc["profiles"]:
        weights = profile.get("weights") or [1] * len(profile["samples"])
        for stack, weight in zip(profile["samples"], weights, strict=True):
            if not stack or _waiting(frames[stack[-1]]):
                continue
            total += weight
            self_w[stack[-1]] += weight
            for index in set(stack):
                incl_w[index] += weight
    if not total:
        return {"samples": 0}
    by_package: Counter[str] = Counter()
    for index, weight in self_w.items():
        by_package[package_of(str(frames[index].get("file", "")))] += weight

    def share(counter: Counter[Any], label: Any) -> list[list[Any]]:
        return [[label(k), round(100 * w / total, 1)] for k, w in counter.most_common(top)]

    # The entry point and the event loop's own frames hold every sample: not news.
    below_root = Counter({i: w for i, w in incl_w.items() if w < ROOT_SHARE * total})

    return {
        "samples": int(total),
        "self_pct": share(self_w, lambda i: _frame_label(frames[i])),
        "inclusive_pct": share(below_root, lambda i: _frame_label(frames[i])),
        "package_self_pct": share(by_package, str),
    }
