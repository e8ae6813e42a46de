"""`relay-gateway` as a process: starts with its dependencies down, stops on SIGTERM.

Bad settings (a placeholder secret outside dev mode, a model catalog that does
not load) are refused the way every service refuses them:
tests/deploy/test_entrypoints.py."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx

from relay_devstack.procs import Child, free_port, wait_until

BIN = Path(sys.executable).parent


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(values)
    return env


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=1.0).status_code
    except httpx.HTTPError:
        return 0


def test_starts_with_dependencies_down_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, management = free_port(), free_port()
    env = _env(
        RELAY_DEV_MODE="true",
        RELAY_PORT=str(port),
        RELAY_MANAGEMENT_PORT=str(management),
        RELAY_STATE_URL=f"http://127.0.0.1:{free_port()}",
        RELAY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    child = Child("gateway", [str(BIN / "relay-gateway")], log_path=tmp_path / "gw.log", env=env)
    try:
        base, mgmt = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{management}"
        wait_until(lambda: _status(f"{base}/healthz") == 200, timeout_s=20, what="/healthz")
        assert _status(f"{mgmt}/livez") == 200  # the liveness probe's, on its own port
        assert _status(f"{mgmt}/readyz") == 503
        assert _status(f"{base}/readyz") == 404  # not on the public port
        child.signal(signal.SIGTERM)
        started = time.monotonic()
        child.proc.wait(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        child.stop()
    logs = (tmp_path / "gw.log").read_text()
    assert '"msg": "gateway starting"' in logs
    assert "dev-internal-token" not in logs
