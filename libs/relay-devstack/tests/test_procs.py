"""Child processes: bounded stop with SIGKILL escalation, and leak checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from relay_devstack.procs import Child, descendants, pid_alive, stop_all

STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('up', flush=True); time.sleep(60)"
)


def test_stop_all_kills_what_ignores_sigterm_within_the_deadline(tmp_path: Path) -> None:
    polite = Child("polite", [sys.executable, "-c", "import time; time.sleep(60)"],
                   log_path=tmp_path / "polite.log")  # fmt: skip
    stubborn = Child("stubborn", [sys.executable, "-c", STUBBORN], log_path=tmp_path / "s.log")
    deadline = time.monotonic() + 10
    while "up" not in stubborn.tail() and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = {polite.pid, stubborn.pid}
    assert pids <= descendants(os.getpid())
    started = time.monotonic()
    stop_all([polite, stubborn], timeout_s=1.0)
    assert time.monotonic() - started < 4
    assert polite.proc.returncode == -signal.SIGTERM
    assert stubborn.proc.returncode == -signal.SIGKILL
    assert not any(pid_alive(p) for p in pids)


def test_stopped_child_still_stops(tmp_path: Path) -> None:
    child = Child("paused", [sys.executable, "-c", "import time; time.sleep(60)"],
                  log_path=tmp_path / "p.log")  # fmt: skip
    child.signal(signal.SIGSTOP)
    started = time.monotonic()
    child.stop(timeout_s=5)
    assert time.monotonic() - started < 4
    assert not pid_alive(child.pid)


def test_child_started_from_a_short_lived_thread_outlives_it(tmp_path: Path) -> None:
    """Regression: PR_SET_PDEATHSIG follows the forking *thread*; a child started
    from `asyncio.to_thread` used to be killed as soon as that worker thread exited."""
    started: list[Child] = []
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    worker = threading.Thread(
        target=lambda: started.append(Child("sleeper", argv, log_path=tmp_path / "sleeper.log"))
    )
    worker.start()
    worker.join()
    child = started[0]
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            child.proc.wait(timeout=1.0)  # SIGTERM would arrive within milliseconds
    finally:
        child.stop(timeout_s=5)
