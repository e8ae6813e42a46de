"""The real gateway against the real state service, Redis and Postgres.

state runs as its own process (`relay-state migrate`, then `relay-state`) on
a free port, with a fresh database; the gateway runs
in-process (its lifespan entered, requests through httpx's ASGI transport), so
each test can build a gateway with the settings it needs in milliseconds.
Gateway tests use Redis database 3 of the session's Redis server so the kill
switch and the queues they touch are not another package's.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from relay_core import state_api
from relay_core.config import DEV_INTERNAL_TOKEN
from relay_core.redis import create_redis
from relay_core.state_client import StateClient
from relay_devstack.procs import Child, free_port, wait_until
from relay_devstack.servers import PostgresServer
from relay_gateway.app import create_app
from relay_gateway.config import GatewaySettings

BIN = Path(sys.executable).parent
GATEWAY_REDIS_DB = 3


@dataclass
class StateProcess:
    """A `relay-state` process that can be stopped and started again on its port."""

    database_url: str
    redis_url: str
    log_dir: Path
    port: int = field(default_factory=free_port)
    child: Child | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        env.update(
            RELAY_DATABASE_URL=self.database_url,
            RELAY_REDIS_URL=self.redis_url,
            RELAY_DEV_MODE="true",
            RELAY_HOST="127.0.0.1",
            RELAY_PORT=str(self.port),
            RELAY_LOG_LEVEL="INFO",
        )
        return env

    def migrate(self) -> None:
        out = subprocess.run(
            [str(BIN / "relay-state"), "migrate"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, f"relay-state migrate failed:\n{out.stdout}\n{out.stderr}"

    def start(self) -> StateProcess:
        self.child = Child(
            "state", [str(BIN / "relay-state")], log_path=self.log_dir / "state.log", env=self.env()
        )
        wait_until(self._ready, timeout_s=30, what=f"relay-state on port {self.port}")
        return self

    def _ready(self) -> bool:
        assert self.child is not None
        if not self.child.alive():
            raise RuntimeError(f"relay-state exited:\n{self.child.tail(40)}")
        try:
            resp = httpx.get(
                f"{self.url}{state_api.INTERNAL_PREFIX}/ready",
                headers={state_api.INTERNAL_TOKEN_HEADER: DEV_INTERNAL_TOKEN},
                timeout=1.0,
            )
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None


def gateway_redis_url(redis_url: str) -> str:
    base, _, _ = redis_url.rpartition("/")
    return f"{base}/{GATEWAY_REDIS_DB}"


@pytest.fixture(scope="session")
def gw_redis_url(redis_url: str) -> str:
    return gateway_redis_url(redis_url)


StartState = Callable[..., StateProcess]


@pytest.fixture
def start_state(
    postgres_server: PostgresServer, gw_redis_url: str, tmp_path: Path
) -> Iterator[StartState]:
    """Start a state process of its own (for tests that stop it)."""
    started: list[StateProcess] = []

    def start(redis_url: str | None = None) -> StateProcess:
        db = postgres_server.create_database(f"gw_{uuid.uuid4().hex[:12]}")
        proc = StateProcess(db, redis_url or gw_redis_url, tmp_path / f"state{len(started)}")
        proc.migrate()
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def state_service(
    postgres_server: PostgresServer, gw_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StateProcess]:
    """One state process and database shared by the gateway's tests (each test
    makes users of its own, so they cannot see each other's data)."""
    db = postgres_server.create_database(f"gw_{uuid.uuid4().hex[:12]}")
    proc = StateProcess(db, gw_redis_url, tmp_path_factory.mktemp("state"))
    proc.migrate()
    proc.start()
    yield proc
    proc.stop()


def gateway_settings(state_url: str, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "dev_mode": True,
        "state_url": state_url,
        "auth_cache_ttl_s": 1.0,
        "kill_switch_refresh_s": 0.1,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@asynccontextmanager
async def gateway_client(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """The real gateway app, lifespan entered, behind an httpx client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
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
    client = StateClient(state_service.url, DEV_INTERNAL_TOKEN)
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
