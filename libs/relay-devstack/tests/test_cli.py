"""`relay-dev` (what `make dev` runs), driven as a user would: a subprocess on
a temporary data folder and free ports, stopped with signals."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay_devstack.devlock import DevLock
from relay_devstack.harness import stack_data_dir, wait_for
from relay_devstack.ports import DEV_PORTS
from relay_devstack.procs import descendants, free_port, pid_alive

RELAY_DEV = str(Path(sys.executable).parent / "relay-dev")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = stack_data_dir("relay-dev-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def dev_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["RELAY_DEV_DATA_DIR"] = str(data_dir)
    for var, _default in DEV_PORTS.values():
        env[var] = str(free_port())
    return env


class DevProcess:
    """`relay-dev up` in the background, its output collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [RELAY_DEV, "up"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout_s: float = 90) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"relay-dev exited {self.proc.returncode}:\n{self.output}")
            return any(line.startswith("Ready in") for line in self.lines)

        wait_for(ready, timeout_s=timeout_s, what="relay-dev up to be ready")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout_s)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_dev(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RELAY_DEV, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


# --- without the services ------------------------------------------------------


def test_second_up_while_locked_says_already_running(data_dir: Path) -> None:
    lock = DevLock(data_dir / "dev.lock")
    assert lock.acquire()
    lock.publish({"status": "ready", "gateway": "http://127.0.0.1:18080"})
    try:
        done = run_dev(dev_env(data_dir), "up")
    finally:
        lock.release()
    assert done.returncode == 1
    assert f"Relay is already running (pid {os.getpid()})" in done.stderr
    assert "gateway http://127.0.0.1:18080" in done.stderr
    assert "Ctrl-C in its terminal" in done.stderr


def test_port_taken_names_port_and_variable(data_dir: Path) -> None:
    env = dev_env(data_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env["RELAY_EVENTS_PORT"] = str(port)
        done = run_dev(env, "up")
    assert done.returncode == 1
    assert f"port {port} (events) is already in use" in done.stderr
    assert "RELAY_EVENTS_PORT" in done.stderr
    assert not (data_dir / "redis").exists()  # failed before starting anything


def test_bad_port_setting_is_a_clear_error(data_dir: Path) -> None:
    env = dev_env(data_dir)
    env["RELAY_GATEWAY_PORT"] = "eighty"
    done = run_dev(env, "up")
    assert done.returncode == 1
    assert "RELAY_GATEWAY_PORT='eighty' is not a port number" in done.stderr


def test_status_when_not_running(data_dir: Path) -> None:
    done = run_dev(dev_env(data_dir), "status")
    assert done.returncode == 1
    assert "not running" in done.stdout


def test_clean_data_keeps_the_tools(data_dir: Path) -> None:
    for name in ("redis", "logs", "tools"):
        (data_dir / name).mkdir()
    (data_dir / "dev-api-key").write_text("rk_x")
    done = run_dev(dev_env(data_dir), "clean-data")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == ["tools"]


# --- the whole stack ---------------------------------------------------------


def _key_files(data_dir: Path) -> dict[str, str]:
    keys = {}
    for name in ("dev-api-key", "dev-admin-key"):
        path = data_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        keys[name] = path.read_text().strip()
    return keys


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _assert_all_gone(pids: set[int]) -> None:
    left = sorted(p for p in pids if pid_alive(p))
    assert not left, f"processes left behind: {left}"


def test_up_lifecycle(data_dir: Path) -> None:
    """Ready with keys; a second `up` refused; SIGTERM stops everything within
    10 s; a restart reuses the keys; a child that dies stops everything (exit 1)."""
    env = dev_env(data_dir)
    first = DevProcess(env)
    try:
        first.wait_ready()
        keys = _key_files(data_dir)
        assert keys["dev-api-key"] in first.output
        assert keys["dev-admin-key"] in first.output
        assert f"http://127.0.0.1:{env['RELAY_GATEWAY_PORT']}/docs" in first.output
        assert f"http://127.0.0.1:{env['RELAY_GATEWAY_PORT']}/console/" in first.output
        pids = descendants(first.proc.pid)
        assert len(pids) >= 8  # redis, postgres, modelsim, state, 2 runners, gateway, events

        second = run_dev(env, "up")
        assert second.returncode == 1
        assert f"Relay is already running (pid {first.proc.pid})" in second.stderr
        assert run_dev(env, "status").returncode == 0

        code, took = first.stop(signal.SIGTERM)
        assert code == 0, first.output
        assert took < 10, f"stop took {took:.1f}s"
        _assert_all_gone(pids)
    finally:
        first.kill()

    again = DevProcess(env)
    try:
        again.wait_ready()
        assert _key_files(data_dir) == keys  # still valid: Postgres kept its data
        pids = descendants(again.proc.pid)
        modelsim = next(p for p in pids if b"relay-modelsim" in _cmdline(p))
        os.kill(modelsim, signal.SIGKILL)
        assert again.proc.wait(20) == 1
        assert "modelsim stopped unexpectedly" in again.output
        _assert_all_gone(pids)
    finally:
        again.kill()
