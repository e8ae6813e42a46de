"""The real gateway against the real state service, Redis and Postgres.

state runs as its own process (`relay-state migrate`, then `relay-state`) on
a free port, with a fresh database, started the one way every Relay process
is (relay_devstack's Stack, here with only state, beside the session's Redis
and Postgres); tests that need the gateway, a runner or modelsim as processes
start them the same way (`stack_factory` with `services=...`). The gateway
itself mostly runs in-process (its lifespan entered, requests through httpx's
ASGI transport), so each test can build a gateway with the settings it needs
in milliseconds. Gateway tests use Redis database 3 of the session's Redis
server so the kill switch and the queues they touch are not another package's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from relay_core import state_api
from relay_core.config import DEV_INTERNAL_TOKEN
from relay_core.redis import create_redis
from relay_core.state_client import StateClient
from relay_devstack.harness import discard, start_test_stack
from relay_devstack.servers import PostgresServer
from relay_devstack.stack import Stack
from relay_gateway.app import create_app, create_management_app
from relay_gateway.config import GatewaySettings

GATEWAY_REDIS_DB = 3
# The services these tests start talk to each other with the dev token, so a
# StateClient built with it here reaches them.
TOKEN = DEV_INTERNAL_TOKEN


@dataclass
class StateProcess:
    """A `relay-state` process that can be stopped and started again on its port."""

    stack: Stack

    @property
    def url(self) -> str:
        return self.stack.state_url

    @property
    def database_url(self) -> str:
        return self.stack.database_url

    def stop(self) -> None:
        self.stack.stop_service("state")

    def start(self) -> StateProcess:
        self.stack.start_service("state")  # waits until ready
        return self


def start_state_process(postgres_server: PostgresServer, redis_url: str) -> StateProcess:
    """Migrate a fresh database and start state on it (discard() its stack)."""
    database_url = postgres_server.create_database(f"gw_{uuid.uuid4().hex[:12]}")
    stack = start_test_stack(
        services=("state",),
        redis_url=redis_url,
        database_url=database_url,
        internal_token=TOKEN,
        dev_keys=False,
    )
    return StateProcess(stack)


@pytest.fixture(scope="session")
def gw_redis_url(redis_db_url: Callable[[int], str]) -> str:
    return redis_db_url(GATEWAY_REDIS_DB)


StartState = Callable[..., StateProcess]


@pytest.fixture
def start_state(postgres_server: PostgresServer, gw_redis_url: str) -> Iterator[StartState]:
    """Start a state process of its own (for tests that stop it)."""
    started: list[StateProcess] = []

    def start(redis_url: str | None = None) -> StateProcess:
        started.append(start_state_process(postgres_server, redis_url or gw_redis_url))
        return started[-1]

    yield start
    for proc in started:
        discard(proc.stack)


@pytest.fixture(scope="session")
def state_service(postgres_server: PostgresServer, gw_redis_url: str) -> Iterator[StateProcess]:
    """One state process and database shared by the gateway's tests (each test
    makes users of its own, so they cannot see each other's data)."""
    proc = start_state_process(postgres_server, gw_redis_url)
    yield proc
    discard(proc.stack)


def gateway_settings(state_url: str, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "dev_mode": True,
        "state_url": state_url,
        "auth_cache_ttl_s": 1.0,
        "kill_switch_refresh_s": 0.1,
    }
    values.update(overrides)
    return GatewaySettings(**values)


class GatewayClient(httpx.AsyncClient):
    """A client of the gateway's public app, with its management app beside it."""

    management: httpx.AsyncClient


@asynccontextmanager
async def gateway_client(settings: GatewaySettings) -> AsyncIterator[GatewayClient]:
    """The real gateway app, lifespan entered, behind an httpx client; its
    management port's app (probes, /metrics, the detailed /healthz, on the same
    runtime) behind `client.management`."""
    app = create_app(settings)
    mgmt = create_management_app(app)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        mgmt_transport = httpx.ASGITransport(app=mgmt, raise_app_exceptions=False)
        async with (
            GatewayClient(transport=transport, base_url="http://gateway") as client,
            httpx.AsyncClient(transport=mgmt_transport, base_url="http://management") as manage,
        ):
            client.management = manage
            yield client


@dataclass(frozen=True)
class User:
    user_id: str
    key_id: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


NewUser = Callable[..., Awaitable[User]]


@pytest.fixture
async def state_client(state_service: StateProcess) -> AsyncIterator[StateClient]:
    client = StateClient(state_service.url, TOKEN)
    yield client
    await client.aclose()


@pytest.fixture
def new_user(state_client: StateClient) -> NewUser:
    """Create a user with an API key through state's internal API."""

    async def make(role: str = "user", user_id: str | None = None, **limits: Any) -> User:
        uid = user_id or f"u-{uuid.uuid4().hex[:10]}"
        created = await state_client.create_key(
            state_api.CreateKeyIn(user_id=uid, role=role, name="test", **limits)  # type: ignore[arg-type]
        )
        return User(user_id=uid, key_id=created.key_id, api_key=created.api_key)

    return make


@pytest.fixture
async def redis(gw_redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(gw_redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def gateway(
    state_service: StateProcess, gw_redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = gateway_settings(state_service.url, redis_url=gw_redis_url)
    async with gateway_client(settings) as client:
        yield client


async def _poll(
    probe: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str, step_s: float = 0.05
) -> float:
    """Await `probe` until true; fail at the deadline. Returns the seconds it took."""
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(step_s)
    return time.monotonic() - started


MakeGateway = Callable[..., Any]


@pytest.fixture
def make_gateway(gw_redis_url: str) -> MakeGateway:
    """`async with make_gateway(state_url, **settings) as client:` a gateway of its own."""

    def make(state_url: str, **overrides: Any) -> Any:
        overrides.setdefault("redis_url", gw_redis_url)
        return gateway_client(gateway_settings(state_url, **overrides))

    return make


@pytest.fixture
def poll() -> Callable[..., Awaitable[float]]:
    return _poll
