"""A real modelsim process for the agent-loop tests, and helpers to drive the loop."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay_devstack.procs import Child, free_port, port_open, wait_until
from relay_devstack.servers import PostgresServer

# The helper module next to this file (tests here are not a package).
sys.path.insert(0, str(Path(__file__).parent))
from core_testkit import Modelsim

BIN = Path(sys.executable).parent
STATE_REDIS_DB = 7  # of the session Redis: a database no other package's tests use


def modelsim_binary() -> str:
    found = Path(sys.executable).parent / "relay-modelsim"
    return str(found) if found.exists() else (shutil.which("relay-modelsim") or "relay-modelsim")


@pytest.fixture(scope="session")
def modelsim(relay_tmp: Path) -> Iterator[Modelsim]:
    port = free_port()
    env = dict(os.environ) | {
        "RELAY_MODELSIM_PORT": str(port),
        "RELAY_MODELSIM_TOKENS": "8",
        "RELAY_MODELSIM_TOKEN_DELAY_MS": "1",
        "RELAY_MODELSIM_TTFT_MS": "1",
    }
    child = Child(
        "modelsim", [modelsim_binary()], log_path=relay_tmp / "core-modelsim.log", env=env
    )
    try:
        wait_until(lambda: child.alive() and port_open(port), timeout_s=15, what="modelsim")
        yield Modelsim(url=f"http://127.0.0.1:{port}")
    finally:
        child.stop()


@pytest.fixture
def tag() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def anthropic_provider(modelsim: Modelsim) -> AsyncIterator[Any]:
    from relay_core.providers import AnthropicProvider

    provider = AnthropicProvider.create(base_url=modelsim.url, api_key="test-key")
    yield provider
    await provider.aclose()


@pytest.fixture
async def openai_provider(modelsim: Modelsim) -> AsyncIterator[Any]:
    from relay_core.providers import OpenAIProvider

    provider = OpenAIProvider.create(base_url=f"{modelsim.url}/v1", api_key="test-key")
    yield provider
    await provider.aclose()


@pytest.fixture(scope="module")
def state_url(
    postgres_server: PostgresServer, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real relay-state process (its own database, Redis database
    STATE_REDIS_DB), one per test module."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        RELAY_DEV_MODE="true",
        RELAY_DATABASE_URL=postgres_server.create_database(f"t_core_{uuid.uuid4().hex[:12]}"),
        RELAY_REDIS_URL=f"{redis_url.rpartition('/')[0]}/{STATE_REDIS_DB}",
        RELAY_HOST="127.0.0.1",
        RELAY_PORT=str(port),
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
        yield url
    finally:
        child.stop()
