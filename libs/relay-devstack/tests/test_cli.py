"""`relay-dev` (what `make dev` runs), driven as a user would: a subprocess on
a temporary data folder and free ports, stopped with signals, its processes
killed from outside, runs submitted through the gateway's public API."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
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


STATUS_LINE = re.compile(r"^\s+(\S+)\s+pid (\d+)\s+restarts (\d+)", re.MULTILINE)


def processes(env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """`relay-dev status`'s process table: name -> (pid, restarts)."""
    done = run_dev(env, "status")
    assert done.returncode == 0, done.stdout + done.stderr
    return {m[1]: (int(m[2]), int(m[3])) for m in STATUS_LINE.finditer(done.stdout)}


def restarted(env: dict[str, str], name: str, old_pid: int, count: int) -> tuple[int, int] | None:
    """(pid, restarts) once `status` shows `name` restarted `count` times under a new pid."""
    pid, restarts = processes(env).get(name, (old_pid, 0))
    return (pid, restarts) if pid != old_pid and restarts == count else None


def hold_port(port: int, timeout_s: float = 10) -> socket.socket:
    """Listen on `port` as soon as it is free (so a restarted server cannot bind it)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def bound() -> bool:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True

    wait_for(bound, timeout_s=timeout_s, what=f"port {port} to be free", interval_s=0.01)
    sock.listen()
    return sock


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


def test_bad_restart_backoff_is_a_clear_error(data_dir: Path) -> None:
    env = dev_env(data_dir) | {"RELAY_DEV_RESTART_BACKOFF_S": "soon"}
    done = run_dev(env, "up")
    assert done.returncode == 1
    assert "RELAY_DEV_RESTART_BACKOFF_S='soon' is not a number of seconds" in done.stderr
    assert not (data_dir / "redis").exists()


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
    10 s; a restart reuses the keys; a process killed from outside is restarted
    (the stack stays up, `status` counts it); a crash loop stops everything (exit 1)."""
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
        table = processes(env)
        assert set(table) >= {"redis", "postgres", "modelsim", "state", "gateway", "events"}
        assert {restarts for _, restarts in table.values()} == {0}

        code, took = first.stop(signal.SIGTERM)
        assert code == 0, first.output
        assert took < 10, f"stop took {took:.1f}s"
        _assert_all_gone(pids)
    finally:
        first.kill()

    env["RELAY_DEV_RESTART_BACKOFF_S"] = "0.2"  # the crash loop below in seconds, not a minute
    again = DevProcess(env)
    try:
        again.wait_ready()
        assert _key_files(data_dir) == keys  # still valid: Postgres kept its data
        pids = descendants(again.proc.pid)
        modelsim, _ = processes(env)["modelsim"]
        os.kill(modelsim, signal.SIGKILL)
        modelsim, _ = wait_for(
            lambda: restarted(env, "modelsim", modelsim, 1), timeout_s=20, what="modelsim back"
        )
        assert "modelsim exited (code -9 (SIGKILL)); restart 1 in 0.2s" in again.output
        # The embedded servers too: same port, same data (the dev key still works).
        for server in ("redis", "postgres"):
            pid, _ = processes(env)[server]
            os.kill(pid, signal.SIGKILL)
            wait_for(partial(restarted, env, server, pid, 1), timeout_s=30, what=server)
        gateway = f"http://127.0.0.1:{env['RELAY_GATEWAY_PORT']}"
        probes = f"http://127.0.0.1:{env['RELAY_GATEWAY_MANAGEMENT_PORT']}"
        wait_for(lambda: _ready(probes), timeout_s=30, what="the gateway ready again")
        me = httpx.get(f"{gateway}/v1/runs/run_none", headers=_auth(keys["dev-api-key"]))
        assert me.status_code == 404, me.text  # authenticated (Postgres kept the key)
        assert again.proc.poll() is None  # the stack did not stop

        # Its port taken, every restart of modelsim fails at once: a crash loop.
        pids |= descendants(again.proc.pid)
        os.kill(modelsim, signal.SIGKILL)
        with hold_port(int(env["RELAY_MODELSIM_PORT"])):
            assert again.proc.wait(60) == 1
        assert "modelsim is crash-looping" in again.output
        assert "address already in use" in again.output  # its log tail, with the cause
        assert "Stopping everything." in again.output
        _assert_all_gone(pids)
    finally:
        again.kill()


def _submit(client: httpx.Client, n: int) -> str:
    directive = {
        "tools": [{"name": "calculator", "args": {"expression": f"{n}*7"}}],
        "tokens": 60,
        "token_delay_ms": 50,
    }
    resp = client.post(
        "/v1/runs", json={"message": f"What is {n}*7?\n#sim {json.dumps(directive)}"}
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["run_id"])


def _statuses(client: httpx.Client, run_ids: list[str]) -> dict[str, str]:
    return {r: client.get(f"/v1/runs/{r}").json()["status"] for r in run_ids}


def _finished(client: httpx.Client, run_ids: list[str]) -> dict[str, str] | None:
    statuses = _statuses(client, run_ids)
    done = all(s in ("succeeded", "failed", "cancelled") for s in statuses.values())
    return statuses if done else None


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _ready(url: str) -> bool:
    """`url`'s /readyz (a management port's) answers 200."""
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_kill_9_of_the_background_runner_mid_runs(data_dir: Path) -> None:
    """The issue's scenario, as a user would meet it: `make dev` running, background
    runs in flight (a tool call, then a slow answer), the background runner
    killed -9. It is back within seconds, every run succeeds, the stack never
    stopped. (A 5 s lease, which any user may set, so the runs it held are
    taken over in seconds rather than the default 30.)"""
    env = dev_env(data_dir) | {"RELAY_LEASE_TTL_S": "5"}
    dev = DevProcess(env)
    try:
        dev.wait_ready()
        key = (data_dir / "dev-api-key").read_text().strip()
        gateway = f"http://127.0.0.1:{env['RELAY_GATEWAY_PORT']}"
        runner_url = f"http://127.0.0.1:{env['RELAY_RUNNER_PORT']}"
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=gateway, headers=auth, timeout=10) as client:
            run_ids = [_submit(client, n) for n in range(6)]
            wait_for(
                lambda: "running" in _statuses(client, run_ids).values(),
                timeout_s=30,
                what="a run in flight",
            )
            runner, restarts = processes(env)["runner-background"]
            assert restarts == 0
            os.kill(runner, signal.SIGKILL)
            # Back within seconds: restarted after the 1 s back-off, then ready.
            wait_for(
                lambda: restarted(env, "runner-background", runner, 1),
                timeout_s=15,
                what="the runner restarted",
            )
            wait_for(lambda: _ready(runner_url), timeout_s=30, what="the new runner ready")
            final = wait_for(
                lambda: _finished(client, run_ids), timeout_s=120, what="every run finished"
            )
            attempts = [client.get(f"/v1/runs/{r}").json()["attempts"] for r in run_ids]
        assert set(final.values()) == {"succeeded"}, final
        assert max(attempts) >= 2, attempts  # runs in flight at the kill were taken over
        assert dev.proc.poll() is None, dev.output  # the stack never stopped
        assert "runner-background exited (code -9 (SIGKILL)); restart 1 in 1s" in dev.output
        assert "Stopping everything" not in dev.output
        assert processes(env)["runner-background"][1] == 1
        code, _ = dev.stop(signal.SIGTERM)
        assert code == 0, dev.output
    finally:
        dev.kill()
