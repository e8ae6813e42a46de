"""Keep `make dev`'s processes running, the way Kubernetes keeps a pod's
containers running: a process that exits on its own is started again with
the same command and environment, after a back-off, and only a crash loop
stops the stack.

Decisions:

- Back-off doubles from `first_delay_s` (1 s) up to `max_delay_s` (30 s),
  kubelet's shape. It starts over once a process has stayed up for
  `stable_after_s`: a service that crashes once an hour is restarted after
  1 s each time, not after 30.
- A crash loop is a process that needs a restart after `crash_loop_restarts`
  (5) restarts within `crash_loop_window_s` (60 s): at most five restarts in
  any minute. Then the stack stops with that process's log tail, as `make dev`
  always did for a death, because by then the cause is in the code or the
  configuration and restarting only hides it.
- The supervisor only decides; the process table (`Processes`, which the
  Stack implements) does the restarting. The embedded Redis and Postgres are
  in the table too, restarted on the same port and data folder.
- Nothing here sleeps: `poll()` is called by the CLI's wait loop, so Ctrl-C
  is handled between polls. A restart that fails (a server that will not come
  up) counts as another exit and backs off further.
"""

from __future__ import annotations

import collections
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CrashLoop", "Exit", "Processes", "RestartPolicy", "Supervisor"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    crash_loop_restarts: int = 5
    crash_loop_window_s: float = 60.0
    stable_after_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """The wait before the `attempt`-th restart in a row (1-based): 1, 2, 4 ... 30 s."""
        return min(self.first_delay_s * 2 ** max(0, attempt - 1), self.max_delay_s)


class Processes(Protocol):
    """The process table the supervisor watches (relay_devstack.stack.Stack)."""

    def exited(self) -> list[str]:
        """Processes that exited without being stopped on purpose."""
        ...

    def exit_code(self, name: str) -> int | None: ...

    def log_tail(self, name: str, lines: int = 30) -> str: ...

    def respawn(self, name: str) -> None:
        """Start `name` again, same command and environment; raise if it cannot."""
        ...


def describe_code(code: int | None) -> str:
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"code {code}"
    return f"code {code}"


@dataclass(frozen=True)
class Exit:
    """A process exited and will be restarted: what the terminal is told."""

    name: str
    code: int | None
    last_line: str
    restart: int  # the number this restart will have (1 for the first)
    delay_s: float

    def notice(self) -> str:
        last = self.last_line.strip()
        if len(last) > 200:
            last = last[:197] + "..."
        return (
            f"{self.name} exited ({describe_code(self.code)}); restart {self.restart} "
            f"in {self.delay_s:g}s; last log line: {last or '(none)'}"
        )


class CrashLoop(Exception):
    """A process kept exiting: too many restarts within the window."""

    def __init__(self, name: str, code: int | None, restarts: int, window_s: float) -> None:
        self.name = name
        self.code = code
        super().__init__(
            f"{name} is crash-looping: it exited ({describe_code(code)}) again after "
            f"{restarts} restarts within {window_s:g}s"
        )


@dataclass
class _Record:
    started_at: float
    restarts: int = 0
    streak: int = 0  # restarts in a row without a stable run
    last_exit: int | None = None
    due: float | None = None  # when the pending restart is due
    history: collections.deque[float] = field(default_factory=collections.deque)


class Supervisor:
    def __init__(
        self,
        processes: Processes,
        policy: RestartPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.processes = processes
        self.policy = policy or RestartPolicy()
        self._clock = clock
        self._since = clock()  # the processes were started just before
        self._records: dict[str, _Record] = {}

    def restarts(self) -> dict[str, int]:
        """Restarts so far per process that has had any."""
        return {n: r.restarts for n, r in self._records.items() if r.restarts}

    def last_exit(self, name: str) -> int | None:
        record = self._records.get(name)
        return record.last_exit if record else None

    def poll(self) -> list[Exit]:
        """Notice new exits (raising CrashLoop for a crash loop) and run due restarts.
        Returns the exits noticed now, each with its restart's number and delay."""
        now = self._clock()
        noticed = []
        for name in self.processes.exited():
            record = self._records.setdefault(name, _Record(started_at=self._since))
            if record.due is None:
                noticed.append(self._exited(name, record, self.processes.exit_code(name), now))
        for name, record in self._records.items():
            if record.due is not None and now >= record.due:
                failed = self._restart(name, record)
                if failed is not None:
                    noticed.append(failed)
        return noticed

    def _exited(self, name: str, record: _Record, code: int | None, now: float) -> Exit:
        policy = self.policy
        while record.history and now - record.history[0] > policy.crash_loop_window_s:
            record.history.popleft()
        record.last_exit = code
        if len(record.history) >= policy.crash_loop_restarts:
            raise CrashLoop(name, code, len(record.history), policy.crash_loop_window_s)
        if now - record.started_at >= policy.stable_after_s:
            record.streak = 0
        record.streak += 1
        delay = policy.delay(record.streak)
        record.due = now + delay
        last_line = self.processes.log_tail(name, 1)
        return Exit(name, code, last_line, record.restarts + 1, delay)

    def _restart(self, name: str, record: _Record) -> Exit | None:
        """Start `name` again; a start that fails is another exit (returned)."""
        record.due = None
        record.restarts += 1
        record.started_at = self._clock()
        record.history.append(record.started_at)
        try:
            self.processes.respawn(name)
        except (RuntimeError, OSError) as exc:  # StackError, a server that did not come up
            logger.warning("%s could not be restarted: %s", name, exc)
            return self._exited(name, record, self.processes.exit_code(name), self._clock())
        return None
