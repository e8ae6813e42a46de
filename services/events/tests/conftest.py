"""Fixtures for the events service: real Postgres, Redis, `relay-state` and
`relay-events` processes on free ports, driven over HTTP like a client.

Processes (not in-process apps) because what is tested is also the console
script, SSE over a real socket, client disconnects and SIGTERM.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from relay_core.state_api import CreateKeyIn, CreateRunIn, RunOut
from relay_core.state_client import StateClient
from relay_devstack.procs import Child, free_port, wait_until
from relay_devstack.servers import PostgresServer

BIN = Path(sys.executable).parent
TOKEN = "events-test-internal-token"


def service_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(RELAY_DEV_MODE="true", RELAY_INTERNAL_TOKEN=TOKEN, RELAY_LOG_LEVEL="WARNING")
    env.update(values)
    return env


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def spawn_events(log_dir: Path, **env: str) -> tuple[Child, str]:
    """Start `relay-events` (without waiting for it: see `wait_healthy`)."""
    port = free_port()
    child = Child(
        "events",
        [str(BIN / "relay-events")],
        log_path=log_dir / f"events-{port}.log",
        env=service_env(RELAY_PORT=str(port), **env),
    )
    return child, f"http://127.0.0.1:{port}"


def wait_healthy(child: Child, url: str) -> None:
    def check() -> bool:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
        return healthy(url)

    wait_until(check, timeout_s=20, what=child.name)


@dataclass
class Stack:
    state_url: str
    events_url: str
    redis_url: str
    events: Child


@pytest.fixture(scope="session")
def stack(
    postgres_server: PostgresServer, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("events-stack")
    state_port = free_port()
    state_url = f"http://127.0.0.1:{state_port}"
    # events first: it needs neither state nor Postgres to start, so it boots
    # while the database is migrated.
    events, events_url = spawn_events(
        logs, RELAY_REDIS_URL=redis_url, RELAY_STATE_URL=state_url, RELAY_KEEPALIVE_S="0.5"
    )
    state: Child | None = None
    try:
        database_url = postgres_server.create_database(f"t_events_{uuid.uuid4().hex[:12]}")
        migrated = subprocess.run(
            [str(BIN / "relay-state"), "migrate", "--database-url", database_url],
            capture_output=True,
            text=True,
            timeout=60,
            env=service_env(),
        )
        assert migrated.returncode == 0, migrated.stderr
        state = Child(
            "state",
            [str(BIN / "relay-state")],
            log_path=logs / "state.log",
            env=service_env(
                RELAY_PORT=str(state_port),
                RELAY_DATABASE_URL=database_url,
                RELAY_REDIS_URL=redis_url,
            ),
        )
        wait_healthy(events, events_url)
        wait_healthy(state, state_url)
        yield Stack(state_url=state_url, events_url=events_url, redis_url=redis_url, events=events)
    finally:
        events.stop()
        if state is not None:
            state.stop()


@pytest.fixture
async def state(stack: Stack) -> AsyncIterator[StateClient]:
    client = StateClient(stack.state_url, TOKEN, timeout_s=5.0)
    yield client
    await client.aclose()


@pytest.fixture
async def rc(stack: Stack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@dataclass
class User:
    user_id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def new_user(state: StateClient) -> User:
    user_id = f"u_{uuid.uuid4().hex[:10]}"
    created = await state.create_key(CreateKeyIn(user_id=user_id))
    return User(user_id=user_id, key=created.api_key)


@pytest.fixture
async def alice(state: StateClient) -> User:
    return await new_user(state)


@pytest.fixture
async def bob(state: StateClient) -> User:
    return await new_user(state)


async def new_run(state: StateClient, user: User) -> RunOut:
    run, _ = await state.create_run(
        CreateRunIn(user_id=user.user_id, message="hello", model="sim-default")
    )
    return run


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.events_url, timeout=httpx.Timeout(10.0, connect=5.0)
    ) as c:
        yield c
