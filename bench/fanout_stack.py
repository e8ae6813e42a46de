"""The stack under fanout.py's load: started, read from, and its child processes.

`start_http_stack` runs embedded Postgres (migrated), `relay-state` and one
`relay-events` as processes on free ports, with a throwaway internal token;
`create_runs` records one user's key and the runs the subscribers follow.
`BenchStack` holds what a scenario started, so `stop()` ends all of it.

`Sampler` reads the measured process while a phase runs: its peak Redis
connections (CLIENT LIST, by client name), peak RSS and CPU (psutil), the
SSE client processes' CPU, and the machine's CPU. `_spawn` starts
bench/fanout.py itself in one of its roles (fanout_roles.py) and
`_wait_files` waits for the files a role writes.

Not a bench script (no `main()`): bench/fanout.py imports it as a sibling.
"""

# ruff: noqa: S105
# (its internal token is a throwaway for its own processes)

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import psutil

from relay_core.redis import create_redis
from relay_core.state_api import CreateKeyIn, CreateRunIn
from relay_core.state_client import StateClient
from relay_devstack.procs import Child, free_port, wait_until
from relay_devstack.rediscluster import RedisClusterServer, each_server
from relay_devstack.servers import PostgresServer, RedisServer

SCRIPT = Path(__file__).resolve().parent / "fanout.py"  # what `_spawn` runs
BIN = Path(sys.executable).parent
TOKEN = "bench-internal-token"


# ---------------------------------------------------------------- measurements


async def redis_clients(redis_url: str, name_prefix: str) -> int:
    """Connections named `name_prefix*`, on every server (every node of a cluster)."""
    rc = create_redis(redis_url)
    try:
        total = 0
        async for server in each_server(rc):
            clients = await server.client_list()
            total += sum(1 for c in clients if c.get("name", "").startswith(name_prefix))
        return total
    finally:
        await rc.aclose()


@dataclass
class Sampler:
    """Peak Redis connections and RSS, and CPU, of one process while load runs."""

    redis_url: str
    name_prefix: str
    pid: int
    client_pids: list[int]  # the SSE client processes (http), to show what they cost
    peak_conns: int = 0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    clients_cpu_s: float = 0.0
    machine_cpu_percent: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        proc = psutil.Process(self.pid)
        clients = [psutil.Process(p) for p in self.client_pids]
        cpu0 = sum(proc.cpu_times()[:2])
        clients0 = sum(sum(c.cpu_times()[:2]) for c in clients)
        psutil.cpu_percent()  # starts the machine-wide measurement
        while not stop.is_set():
            self.peak_conns = max(
                self.peak_conns, await redis_clients(self.redis_url, self.name_prefix)
            )
            self.peak_rss_mb = max(self.peak_rss_mb, proc.memory_info().rss / 2**20)
            self.cpu_s = sum(proc.cpu_times()[:2]) - cpu0
            self.clients_cpu_s = sum(sum(c.cpu_times()[:2]) for c in clients) - clients0
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
        self.machine_cpu_percent = psutil.cpu_percent() * (psutil.cpu_count() or 1)


# ------------------------------------------------------------------ the stack


@dataclass
class BenchStack:
    workdir: Path
    redis: RedisServer | RedisClusterServer
    postgres: PostgresServer | None = None
    state: Child | None = None
    events: Child | None = None
    events_port: int = 0
    key: str = ""

    def stop(self) -> None:
        for child in (self.events, self.state):
            if child is not None:
                child.stop()
        if self.postgres is not None:
            self.postgres.stop()
        self.redis.stop()


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(RELAY_DEV_MODE="true", RELAY_INTERNAL_TOKEN=TOKEN, RELAY_LOG_LEVEL="WARNING")
    env.update(values)
    return env


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def start_http_stack(stack: BenchStack) -> str:
    """Postgres, migrated; relay-state; relay-events. Returns state's URL."""
    stack.postgres = PostgresServer(stack.workdir / "postgres").start()
    db = stack.postgres.url
    out = subprocess.run(
        [str(BIN / "relay-state"), "migrate", "--database-url", db],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    if out.returncode != 0:
        raise RuntimeError(f"migrate failed: {out.stderr}")
    state_port, stack.events_port = free_port(), free_port()
    state_url = f"http://127.0.0.1:{state_port}"
    stack.state = Child(
        "state",
        [str(BIN / "relay-state")],
        log_path=stack.workdir / "state.log",
        env=_env(
            RELAY_PORT=str(state_port),
            RELAY_MANAGEMENT_PORT=str(free_port()),
            RELAY_DATABASE_URL=db,
            RELAY_REDIS_URL=stack.redis.url,
        ),
    )
    stack.events = Child(
        "events",
        [str(BIN / "relay-events")],
        log_path=stack.workdir / "events.log",
        env=_env(
            RELAY_PORT=str(stack.events_port),
            RELAY_MANAGEMENT_PORT=str(free_port()),
            RELAY_REDIS_URL=stack.redis.url,
            RELAY_STATE_URL=state_url,
            RELAY_AUTH_CACHE_TTL_S="60",
        ),
    )
    for url in (state_url, f"http://127.0.0.1:{stack.events_port}"):
        wait_until(partial(_healthy, url), timeout_s=30, what=url)
    return state_url


async def create_runs(state_url: str, n: int) -> tuple[str, list[str]]:
    """One user's key and `n` runs recorded by state (queued; nobody executes them)."""
    state = StateClient(state_url, TOKEN, timeout_s=10.0)
    try:
        user = f"bench_{uuid.uuid4().hex[:8]}"
        # One key opens every subscriber's stream: limits far past the bench's
        # (a stream open counts against the rate limit, open streams are capped).
        limits = CreateKeyIn(user_id=user, rate_limit_per_min=10_000_000, max_streams=10_000_000)
        key = (await state.create_key(limits)).api_key
        sem = asyncio.Semaphore(20)

        async def one(i: int) -> str:
            async with sem:
                run, _ = await state.create_run(
                    CreateRunIn(user_id=user, message=f"bench {i}", model="sim-default")
                )
                return run.run_id

        return key, list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await state.aclose()


# ---------------------------------------------------------- child processes


def _spawn(workdir: Path, name: str, role_args: list[str]) -> Child:
    argv = [sys.executable, str(SCRIPT), *role_args]
    return Child(name, argv, log_path=workdir / f"{name}.log", env=dict(os.environ))


def _wait_files(paths: list[Path], children: list[Child], timeout_s: float, what: str) -> None:
    def check() -> bool:
        for child in children:
            if not child.alive() and child.proc.returncode != 0:
                raise RuntimeError(f"{child.name} failed:\n{child.tail()}")
        return all(p.exists() for p in paths)

    wait_until(check, timeout_s=timeout_s, what=what, step_s=0.2)
