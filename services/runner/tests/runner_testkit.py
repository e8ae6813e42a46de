"""Helpers of the runner tests: polling, event reading, the stack's processes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from relay_core import events, keys
from relay_core.events import Event
from relay_core.redis import stream_entries
from relay_devstack.procs import Child
from relay_devstack.rediscluster import each_server
from relay_devstack.stack import Stack as DevStack

TOKEN = "runner-test-internal-token"
TESTS_DIR = Path(__file__).parent


async def wait_for(
    check: Callable[[], Awaitable[Any]], *, timeout_s: float = 10.0, what: str = "condition"
) -> Any:
    """Poll an async check until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


async def run_events(redis: Redis, run_id: str) -> list[Event]:
    entries = stream_entries(await redis.xrange(keys.events(run_id)))
    return [events.decode_entry(eid, fields) for eid, fields in entries]


async def wait_done(redis: Redis, run_id: str, timeout_s: float = 15.0) -> list[Event]:
    async def done() -> list[Event] | None:
        found = await run_events(redis, run_id)
        return found if any(e.type == "done" for e in found) else None

    found: list[Event] = await wait_for(done, timeout_s=timeout_s, what=f"done of {run_id}")
    return found


async def queue_entry(redis: Redis, queue: str, run_id: str) -> str | None:
    """The id of the newest queue entry of a run."""
    for eid, fields in reversed(stream_entries(await redis.xrange(queue))):
        if fields.get("run_id") == run_id:
            return str(eid)
    return None


async def all_clients(redis: Redis) -> list[dict[str, Any]]:
    """CLIENT LIST of every server (every node of a cluster)."""
    found: list[dict[str, Any]] = []
    async for server in each_server(redis):
        found += await server.client_list()
    return found


async def pending_ids(redis: Redis, queue: str) -> set[str]:
    rows = await redis.xpending_range(queue, keys.RUNNERS_GROUP, min="-", max="+", count=10_000)
    return {str(r["message_id"]) for r in rows}


def sim(text: str, **directive: Any) -> str:
    return f"{text}\n#sim {json.dumps(directive)}"


@dataclass
class Stack:
    """What the runner's tests run against: relay_devstack's Stack (`dev`: state
    and modelsim processes beside the session's Redis and Postgres), and where
    the test tools record their executions."""

    dev: DevStack
    record_log: Path

    @property
    def redis_url(self) -> str:
        return self.dev.redis_url

    @property
    def state_url(self) -> str:
        return self.dev.state_url

    @property
    def modelsim_url(self) -> str:
        return self.dev.modelsim_url

    def runner_env(self, **overrides: Any) -> dict[str, str]:
        env = {
            "RELAY_DEV_MODE": "true",
            "RELAY_REDIS_URL": self.redis_url,
            "RELAY_STATE_URL": self.state_url,
            "RELAY_INTERNAL_TOKEN": TOKEN,
            "RELAY_LEASE_TTL_S": "2",
            "RELAY_BLOCK_MS": "200",
            "RELAY_DRAIN_TIMEOUT_S": "5",
            "RELAY_ANTHROPIC_BASE_URL": self.modelsim_url,
            "RELAY_OPENAI_BASE_URL": f"{self.modelsim_url}/v1",
            "RELAY_EXTRA_TOOLS": "runner_test_tools:tools",
            "RELAY_TEST_RECORD_LOG": str(self.record_log),
        }
        env.update({f"RELAY_{k.upper()}": str(v) for k, v in overrides.items()})
        return env

    async def modelsim_stats(self, tag: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.modelsim_url) as http:
            resp = await http.get("/admin/stats", params={"tag": tag})
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    def records(self, run_id: str) -> list[str]:
        if not self.record_log.exists():
            return []
        lines = self.record_log.read_text().splitlines()
        return [line.split(" ", 1)[1] for line in lines if line.startswith(run_id + " ")]

    def start_runner(self, name: str, **overrides: Any) -> RunnerProcess:
        """A `relay-runner` process named `name` (its consumer name too), alive
        (/healthz) but maybe not ready: `overrides` may point it at dead servers."""
        env = self.runner_env(consumer_name=name, **overrides)
        env["PYTHONPATH"] = str(TESTS_DIR)  # runner_test_tools
        self.dev.start_extra("runner", name, env=env, wait=False)
        self.dev.wait_ready([name], timeout_s=30, alive=True)
        return RunnerProcess(self.dev.children[name], self.dev.specs[name].port)

    def start_state(self, *, port: int, redis_url: str) -> str:
        """Another `relay-state` on `port` with a Redis of its own (the stack's
        database); alive when this returns. Its name, for `dev.stop_service`."""
        env = {**STATE_ENV, "RELAY_REDIS_URL": redis_url}
        name = self.dev.start_extra("state", port=port, env=env, wait=False)
        self.dev.wait_ready([name], timeout_s=20, alive=True)
        return name


# state's settings in these tests: short leases, no reconciler (tests call it).
STATE_ENV = {"RELAY_LEASE_TTL_S": "2", "RELAY_RECONCILE_INTERVAL_S": "3600"}
MODELSIM_ENV = {
    "RELAY_MODELSIM_TOKENS": "8",
    "RELAY_MODELSIM_TOKEN_DELAY_MS": "1",
    "RELAY_MODELSIM_TTFT_MS": "1",
}


class RunnerProcess:
    def __init__(self, child: Child, port: int) -> None:
        self.child = child
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
