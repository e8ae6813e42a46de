"""The runner's test stack: real Redis, Postgres, state and modelsim processes.

The stack is started once per session on free ports (relay_devstack's Stack,
with only state and modelsim, the one way every Relay process is started),
with its own Redis server (tests here stop and restart Redis, and read the
shared queues) and its own database. Runners are started per test: in-process
(`runner` fixture, the real worker code in the test's event loop) or as
`relay-runner` processes (`start_runner`), for signals and crashes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from relay_core.redis import create_redis
from relay_core.state_client import StateClient
from relay_devstack.harness import running_stack
from relay_devstack.rediscluster import RedisClusterServer, start_test_redis
from relay_devstack.servers import PostgresServer, RedisServer

# The helper modules next to this file (tests here are not a package).
sys.path.insert(0, str(Path(__file__).parent))
from runner_testkit import (
    MODELSIM_ENV,
    STATE_ENV,
    TOKEN,
    RunnerProcess,
    Stack,
)


@pytest.fixture(scope="session")
def runner_redis(relay_tmp: Path) -> Iterator[RedisServer | RedisClusterServer]:
    server = start_test_redis(relay_tmp / "runner-redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(
    runner_redis: RedisServer | RedisClusterServer, postgres_server: PostgresServer, relay_tmp: Path
) -> Iterator[Stack]:
    database_url = postgres_server.create_database(f"runner_{uuid.uuid4().hex[:12]}")
    with running_stack(
        {"modelsim": MODELSIM_ENV, "state": STATE_ENV},
        services=("modelsim", "state"),
        redis_url=runner_redis.url,
        database_url=database_url,  # migrated by the stack
        internal_token=TOKEN,
        dev_keys=False,
    ) as dev:
        yield Stack(dev=dev, record_log=relay_tmp / "runner-records.log")


@pytest.fixture
async def redis(stack: Stack) -> AsyncIterator[Redis]:
    client = create_redis(stack.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def state(stack: Stack) -> AsyncIterator[StateClient]:
    client = StateClient(stack.state_url, TOKEN, timeout_s=5.0)
    yield client
    await client.aclose()


@pytest.fixture
def user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tag() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_runner(stack: Stack) -> Iterator[Callable[..., RunnerProcess]]:
    """Start `relay-runner` processes (stopped, then killed, at teardown)."""
    started: list[str] = []

    def start(**overrides: Any) -> RunnerProcess:
        name = overrides.pop("consumer_name", f"proc-{uuid.uuid4().hex[:8]}")
        started.append(name)
        return stack.start_runner(name, **overrides)

    yield start
    for name in started:
        stack.dev.stop_service(name, timeout_s=10)


@pytest.fixture
async def start_inproc(stack: Stack) -> AsyncIterator[Callable[..., Any]]:
    """Start the real worker in this event loop (no HTTP server, no signals)."""
    from relay_runner.config import RunnerSettings
    from relay_runner.runtime import Runtime
    from relay_runner.worker import Worker

    os.environ["RELAY_TEST_RECORD_LOG"] = str(stack.record_log)
    started: list[tuple[Runtime, Worker, asyncio.Task[None]]] = []

    def start(**overrides: Any) -> Worker:
        overrides.setdefault("consumer_name", f"inproc-{uuid.uuid4().hex[:8]}")
        overrides.setdefault("drain_timeout_s", 1)
        env = stack.runner_env(**overrides)
        del env["RELAY_TEST_RECORD_LOG"]
        values: dict[str, Any] = {k.removeprefix("RELAY_").lower(): v for k, v in env.items()}
        settings = RunnerSettings(**values)  # strings, as from the environment
        rt = Runtime.create(settings)
        worker = Worker(rt)
        rt.keeper.start()
        started.append((rt, worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for rt, worker, task in started:
        rt.stopping.set()
        await asyncio.wait_for(task, timeout=5)
        await worker.drain()
        await rt.close()


@pytest.fixture
async def runner(start_inproc: Callable[..., Any]) -> Any:
    """One in-process runner of the background pool."""
    return start_inproc()
