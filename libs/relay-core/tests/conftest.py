"""A real relay-state process for the tests of the state client and of auth."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from relay_devstack.procs import Child, free_port, wait_until
from relay_devstack.servers import PostgresServer

BIN = Path(sys.executable).parent
STATE_REDIS_DB = 7  # of the session Redis: a database no other package's tests use


@pytest.fixture(scope="module")
def state_urls(
    postgres_server: PostgresServer,
    redis_db_url: Callable[[int], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    """A real relay-state process (its own database, Redis database
    STATE_REDIS_DB), one per test module: (its URL, its management port's URL)."""
    port, management = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        RELAY_DEV_MODE="true",
        RELAY_DATABASE_URL=postgres_server.create_database(f"t_core_{uuid.uuid4().hex[:12]}"),
        RELAY_REDIS_URL=redis_db_url(STATE_REDIS_DB),
        RELAY_HOST="127.0.0.1",
        RELAY_PORT=str(port),
        RELAY_MANAGEMENT_PORT=str(management),
        RELAY_LOG_LEVEL="WARNING",
    )
    migrate = [str(BIN / "relay-state"), "migrate"]
    done = subprocess.run(migrate, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"relay-state migrate failed:\n{done.stdout}\n{done.stderr}"
    logs = tmp_path_factory.mktemp("core-state")
    child = Child("state", [str(BIN / "relay-state")], log_path=logs / "state.log", env=env)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if not child.alive():
            raise RuntimeError(f"relay-state exited:\n{child.tail(40)}")
        try:
            return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout_s=30, what="relay-state")
        yield url, f"http://127.0.0.1:{management}"
    finally:
        child.stop()


@pytest.fixture(scope="module")
def state_url(state_urls: tuple[str, str]) -> str:
    return state_urls[0]


@pytest.fixture(scope="module")
def state_metrics_url(state_urls: tuple[str, str]) -> str:
    """State's /metrics, on its management port."""
    return f"{state_urls[1]}/metrics"
