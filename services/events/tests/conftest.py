"""Fixtures for the events service: real Postgres, Redis, `relay-state` and
`relay-events` processes on free ports, driven over HTTP like a client.

Processes (not in-process apps) because what is tested is also the console
script, SSE over a real socket, client disconnects and SIGTERM. They are
started the one way every Relay process is (relay_devstack's Stack: state and
events beside the session's Redis and Postgres); `spawn_events` adds another
events process with settings of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis

from relay_core.redis import create_redis
from relay_core.state_api import CreateKeyIn, CreateRunIn, RunOut
from relay_core.state_client import StateClient
from relay_devstack.harness import running_stack
from relay_devstack.procs import Child, wait_until
from relay_devstack.servers import PostgresServer
from relay_devstack.stack import Stack

__all__ = ["Stack", "User", "new_run", "spawn_events", "wait_healthy"]

TOKEN = "events-test-internal-token"


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def spawn_events(stack: Stack, **env: str) -> tuple[Child, str, str]:
    """Start one more `relay-events` with `env` (without waiting: see
    `wait_healthy`); its process, URL and management port's URL."""
    name = stack.start_extra("events", env={"RELAY_LOG_LEVEL": "WARNING", **env}, wait=False)
    return stack.children[name], stack.url(name), stack.management_url(name)


def wait_healthy(child: Child, url: str) -> None:
    def check() -> bool:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
        return healthy(url)

    wait_until(check, timeout_s=20, what=child.name)


@pytest.fixture(scope="session")
def stack(postgres_server: PostgresServer, redis_url: str) -> Iterator[Stack]:
    database_url = postgres_server.create_database(f"t_events_{uuid.uuid4().hex[:12]}")
    overrides = {"all": {"RELAY_LOG_LEVEL": "WARNING"}, "events": {"RELAY_KEEPALIVE_S": "0.5"}}
    with running_stack(
        overrides,
        services=("state", "events"),
        redis_url=redis_url,
        database_url=database_url,
        internal_token=TOKEN,
        dev_keys=False,
    ) as running:
        yield running


@pytest.fixture
async def state(stack: Stack) -> AsyncIterator[StateClient]:
    client = StateClient(stack.state_url, TOKEN, timeout_s=5.0)
    yield client
    await client.aclose()


@pytest.fixture
async def rc(stack: Stack) -> AsyncIterator[Redis]:
    client = create_redis(stack.redis_url)
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


@pytest.fixture
async def management(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The events service's management port: probes, /metrics, the detailed /healthz."""
    async with httpx.AsyncClient(base_url=stack.management_url("events"), timeout=10.0) as c:
        yield c
