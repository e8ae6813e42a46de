"""The `make dev` supervisor against real child processes: restart with the same
command and environment, back-off, crash loop, a start that fails.

The process table here is the smallest real one (argv + env -> Child); the
Stack implements the same four methods for the whole stack (test_cli.py
drives that through `relay-dev up`)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relay_devstack.procs import Child, pid_alive, wait_until
from relay_devstack.supervise import CrashLoop, Exit, RestartPolicy, Supervisor

SLEEPER = "import os, time; print('up', os.environ['MARK'], flush=True); time.sleep(60)"
CRASHER = "import sys; print('starting'); print('boom: bad config', flush=True); sys.exit(3)"


class Table:
    """Named real processes, restarted from the argv and environment they began with."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.specs: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.children: dict[str, Child] = {}
        self.respawned: list[tuple[str, float]] = []  # (name, monotonic time)

    def start(self, name: str, code: str, **env: str) -> Child:
        self.specs[name] = ([sys.executable, "-c", code], {**os.environ, **env})
        return self._spawn(name)

    def _spawn(self, name: str) -> Child:
        argv, env = self.specs[name]
        self.children[name] = Child(name, argv, log_path=self.log_dir / f"{name}.log", env=env)
        return self.children[name]

    def exited(self) -> list[str]:
        return [n for n, c in self.children.items() if not c.alive()]

    def exit_code(self, name: str) -> int | None:
        return self.children[name].proc.poll()

    def log_tail(self, name: str, lines: int = 30) -> str:
        return self.children[name].tail(lines)

    def respawn(self, name: str) -> None:
        self.respawned.append((name, time.monotonic()))
        self.children[name].stop(timeout_s=0)  # reap, close the log
        self._spawn(name)

    def stop(self) -> None:
        for child in self.children.values():
            child.stop(timeout_s=2)


@pytest.fixture
def table(tmp_path: Path) -> Iterator[Table]:
    running = Table(tmp_path)
    yield running
    running.stop()


def poll_until(
    supervisor: Supervisor, done: Callable[[list[Exit]], bool], timeout_s: float
) -> list[Exit]:
    """Poll as the CLI does until `done(every exit so far)`; the exits."""
    seen: list[Exit] = []
    deadline = time.monotonic() + timeout_s
    while not done(seen):
        assert time.monotonic() < deadline, f"timed out; exits so far: {seen}"
        seen += supervisor.poll()
        time.sleep(0.02)
    return seen


def test_delays_double_from_one_second_up_to_thirty() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert (policy.crash_loop_restarts, policy.crash_loop_window_s) == (5, 60)


def test_a_killed_process_is_restarted_with_the_same_command_and_environment(
    table: Table,
) -> None:
    first = table.start("svc", SLEEPER, MARK="m-1234")
    supervisor = Supervisor(table, RestartPolicy(first_delay_s=0.1))
    wait_until(lambda: "up m-1234" in first.tail(), timeout_s=10, what="the child's first line")
    assert supervisor.poll() == []  # running: nothing to do
    os.kill(first.pid, signal.SIGKILL)
    exits = poll_until(supervisor, lambda _: len(table.respawned) == 1, timeout_s=10)
    assert [(e.name, e.code, e.restart, e.delay_s) for e in exits] == [("svc", -9, 1, 0.1)]
    assert "code -9 (SIGKILL)" in exits[0].notice() and "up m-1234" in exits[0].notice()
    second = table.children["svc"]
    assert second.pid != first.pid and second.alive() and not pid_alive(first.pid)
    environ = Path(f"/proc/{second.pid}/environ").read_bytes()
    assert b"MARK=m-1234" in environ.split(b"\0")
    assert Path(f"/proc/{second.pid}/cmdline").read_bytes().split(b"\0")[:2] == [
        sys.executable.encode(),
        b"-c",
    ]
    assert supervisor.restarts() == {"svc": 1}
    assert supervisor.last_exit("svc") == -9


def test_backoff_doubles_then_a_crash_loop_stops_it(table: Table) -> None:
    """Each wait is at least the back-off (1, 2, 4 ... scaled down, capped); the
    sixth exit within the window is a crash loop, after exactly five restarts."""
    table.start("bad", CRASHER)
    policy = RestartPolicy(first_delay_s=0.1, max_delay_s=0.4, crash_loop_window_s=60)
    supervisor = Supervisor(table, policy)
    with pytest.raises(CrashLoop) as caught:
        poll_until(supervisor, lambda _: False, timeout_s=30)
    assert caught.value.name == "bad" and caught.value.code == 3
    assert "after 5 restarts within 60s" in str(caught.value)
    assert supervisor.restarts() == {"bad": 5}
    assert len(table.respawned) == 5


def test_each_restart_waits_its_backoff(table: Table) -> None:
    table.start("bad", CRASHER)
    policy = RestartPolicy(first_delay_s=0.1, max_delay_s=0.4)
    supervisor = Supervisor(table, policy)
    exits: list[Exit] = []
    noticed_at: list[float] = []
    deadline = time.monotonic() + 30
    while len(table.respawned) < 4:
        assert time.monotonic() < deadline, exits
        for exit_ in supervisor.poll():
            exits.append(exit_)
            noticed_at.append(time.monotonic())
        time.sleep(0.02)
    assert [e.delay_s for e in exits[:4]] == [0.1, 0.2, 0.4, 0.4]
    assert [e.restart for e in exits[:4]] == [1, 2, 3, 4]
    assert all(e.code == 3 and e.last_line == "boom: bad config" for e in exits)
    for exit_, seen, (_, restarted) in zip(exits, noticed_at, table.respawned, strict=False):
        assert restarted - seen >= exit_.delay_s - 0.03, (exit_, restarted - seen)


def test_a_process_that_stayed_up_starts_its_backoff_over(table: Table) -> None:
    table.start("flaky", "import time, sys; time.sleep(0.6); sys.exit(1)")
    policy = RestartPolicy(first_delay_s=0.1, stable_after_s=0.5, crash_loop_window_s=1.0)
    supervisor = Supervisor(table, policy)
    exits = poll_until(supervisor, lambda seen: len(seen) >= 3, timeout_s=30)
    assert [e.delay_s for e in exits] == [0.1, 0.1, 0.1]
    assert [e.restart for e in exits] == [1, 2, 3]


def test_a_restart_that_cannot_start_counts_as_an_exit(table: Table) -> None:
    """A binary gone between two starts: each failed start backs off further, and
    the failures end in a crash loop rather than in silence."""
    first = table.start("gone", SLEEPER, MARK="x")
    table.specs["gone"] = (["/nonexistent/relay-gone"], {})
    supervisor = Supervisor(table, RestartPolicy(first_delay_s=0.05, max_delay_s=0.2))
    os.kill(first.pid, signal.SIGKILL)
    exits: list[Exit] = []
    deadline = time.monotonic() + 20
    with pytest.raises(CrashLoop):
        while time.monotonic() < deadline:
            exits += supervisor.poll()
            time.sleep(0.02)
    assert [e.delay_s for e in exits] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert [e.restart for e in exits] == [1, 2, 3, 4, 5]
    assert supervisor.restarts() == {"gone": 5}
