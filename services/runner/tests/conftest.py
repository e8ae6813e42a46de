"""The runner's test stack: real Redis, Postgres, state and modelsim processes.

The stack is started once per session on free ports, with its own Redis
server (tests here stop and restart Redis, and read the shared queues) and its
own database. Runners are started per test: in-process (`runner` fixture, the
real worker code in the test's event loop) or as `relay-runner` processes
(`start_runner`), for signals and crashes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from relay_core.redis import create_redis
from relay_core.state_client import StateClient
from relay_devstack.procs import Child, free_port, port_open, wait_until
from relay_devstack.servers import PostgresServer, RedisServer

# The helper modules next to this file (tests here are not a package).
sys.path.insert(0, str(Path(__file__).parent))
from runner_testkit import (
    BIN,
    TESTS_DIR,
    TOKEN,
    RunnerProcess,
    Stack,
    alive,
    child_env,
    start_state,
)


@pytest.fixture(scope="session")
def runner_redis(relay_tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(relay_tmp / "runner-redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def runner_database(postgres_server: PostgresServer) -> str:
    url = postgres_server.create_database(f"runner_{uuid.uuid4().hex[:12]}")
    subprocess.run(
        [str(BIN / "relay-state"), "migrate", "--database-url", url],
        check=True,
        env=child_env(),
        capture_output=True,
    )
    return url


@pytest.fixture(scope="session")
def stack(runner_redis: RedisServer, runner_database: str, relay_tmp: Path) -> Iterator[Stack]:
    state_port, sim_port = free_port(), free_port()
    sim_env = child_env(
        RELAY_MODELSIM_PORT=str(sim_port),
        RELAY_MODELSIM_TOKENS="8",
        RELAY_MODELSIM_TOKEN_DELAY_MS="1",
        RELAY_MODELSIM_TTFT_MS="1",
    )
    modelsim = Child(
        "modelsim",
        [str(BIN / "relay-modelsim")],
        log_path=relay_tmp / "runner-sim.log",
        env=sim_env,
    )
    state = start_state(
        database_url=runner_database,
        redis_url=runner_redis.url,
        port=state_port,
        log_path=relay_tmp / "runner-state.log",
    )
    wait_until(lambda: alive(modelsim) and port_open(sim_port), timeout_s=20, what="modelsim")
    try:
        yield Stack(
            redis_url=runner_redis.url,
            state_url=f"http://127.0.0.1:{state_port}",
            modelsim_url=f"http://127.0.0.1:{sim_port}",
            record_log=relay_tmp / "runner-records.log",
        )
    finally:
        state.stop()
        modelsim.stop()


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
def start_runner(stack: Stack, relay_tmp: Path) -> Iterator[Callable[..., RunnerProcess]]:
    """Start `relay-runner` processes (stopped, then killed, at teardown)."""
    started: list[RunnerProcess] = []

    def start(**overrides: Any) -> RunnerProcess:
        port = free_port()
        name = overrides.pop("consumer_name", f"proc-{uuid.uuid4().hex[:8]}")
        env = child_env(**stack.runner_env(port=port, consumer_name=name, **overrides))
        env["PYTHONPATH"] = str(TESTS_DIR)
        log_path = relay_tmp / f"runner-{name}.log"
        child = Child("runner", [str(BIN / "relay-runner")], log_path=log_path, env=env)
        proc = RunnerProcess(child, port)
        started.append(proc)
        wait_until(lambda: alive(child) and port_open(port), timeout_s=30, what="runner")
        return proc

    yield start
    for proc in started:
        proc.child.stop(timeout_s=10)


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
        settings = RunnerSettings(**{k.removeprefix("RELAY_").lower(): v for k, v in env.items()})
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
