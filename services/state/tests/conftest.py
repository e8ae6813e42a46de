"""Fixtures for state's tests: the real app under uvicorn, real Postgres and Redis.

The app runs in a thread on a free port and is called through
`relay_core.state_client.StateClient` (the contract), or raw httpx where a
status code or the error body is the point of the test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis

from relay_core.httpserver import management_server, serve_both
from relay_core.redis import create_redis
from relay_core.state_api import INTERNAL_PREFIX, INTERNAL_TOKEN_HEADER, CreateRunIn
from relay_core.state_client import StateClient
from relay_devstack.procs import free_port
from relay_state.app import create_app, create_management_app
from relay_state.config import StateSettings
from relay_state.db import Database
from relay_state.migrate import migrate

TOKEN = "test-internal-token"


class ServerThread:
    """A uvicorn server in a thread (no signal handlers off the main thread), and
    its management port's beside it on the same event loop."""

    def __init__(self, settings: StateSettings) -> None:
        app = create_app(settings)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=settings.port,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.management = management_server(
            create_management_app(app), host="127.0.0.1", port=settings.management_port
        )
        both = serve_both(self.server, self.management)
        self.thread = threading.Thread(target=asyncio.run, args=(both,), daemon=True)
        self.base_url = f"http://127.0.0.1:{settings.port}"
        self.management_url = f"http://127.0.0.1:{settings.management_port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not (self.server.started and self.management.started):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("state did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> StateSettings:
    values: dict[str, Any] = {
        "dev_mode": True,
        "database_url": database_url,
        "redis_url": redis_url,
        "internal_token": TOKEN,
        "port": free_port(),
        "management_port": free_port(),
        "reconcile_interval_s": 3600.0,  # tests call one pass directly
        "admin_api_key": None,
    }
    values.update(overrides)
    return StateSettings(**values)


@pytest.fixture
async def database_url(fresh_database_url: str) -> str:
    await migrate(fresh_database_url)
    return fresh_database_url


@pytest.fixture
def start_state() -> Iterator[Callable[[StateSettings], ServerThread]]:
    """Start a state app with given settings; every one is stopped at teardown."""
    started: list[ServerThread] = []

    def start(settings: StateSettings) -> ServerThread:
        server = ServerThread(settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def settings(database_url: str, redis_url: str) -> StateSettings:
    return make_settings(database_url, redis_url)


@pytest.fixture
def state(
    settings: StateSettings, start_state: Callable[[StateSettings], ServerThread]
) -> ServerThread:
    return start_state(settings)


@pytest.fixture
async def client(state: ServerThread) -> AsyncIterator[StateClient]:
    client = StateClient(state.base_url, TOKEN, timeout_s=5.0)
    yield client
    await client.aclose()


@pytest.fixture
async def http(state: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP on the internal API, with the token."""
    async with httpx.AsyncClient(
        base_url=state.base_url + INTERNAL_PREFIX,
        headers={INTERNAL_TOKEN_HEADER: TOKEN},
        timeout=5.0,
    ) as http:
        yield http


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, timeout_s=5.0)
    yield database
    await database.close()


def run_request(user_id: str = "alice", message: str = "hello", **kw: Any) -> CreateRunIn:
    return CreateRunIn(user_id=user_id, message=message, model="sim-default", **kw)


@pytest.fixture
def new_run() -> Callable[..., CreateRunIn]:
    return run_request
