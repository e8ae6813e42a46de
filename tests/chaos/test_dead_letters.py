"""A poison run that kills every runner that executes it ends in the dead letters.

`crash` (tools_plugin.py) SIGKILLs its own runner. With
`RELAY_MAX_DELIVERIES=2` the run is executed twice (two runners die), and the
third delivery, to a runner brought back, marks it `failed` with reason
`max_deliveries`, copies its entry to `relay:queue:dead` and ends its stream
with `error` and `done`, instead of killing runners forever.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from relay_core import keys
from relay_devstack.harness import async_wait_for
from tests.chaos.client import Client, Follower, events_client, sim
from tests.chaos.kit import ChaosStack, StartRunner, record_figures

MAX_DELIVERIES = 2
RUNNER_ENV = {"RELAY_LEASE_TTL_S": "2", "RELAY_MAX_DELIVERIES": str(MAX_DELIVERIES)}


async def dead_letters(redis_url: str, run_id: str) -> list[dict[str, str]]:
    """The run's entries on the dead-letter stream (an operator's view: Redis itself)."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        entries: Any = await redis.xrange(keys.QUEUE_DEAD)
    finally:
        await redis.aclose()
    return [dict(fields) for _, fields in entries if fields.get("run_id") == run_id]


async def test_a_poison_run_is_dead_lettered(chaos_stack: ChaosStack, runners: StartRunner) -> None:
    stack = chaos_stack.stack
    names = runners("a", "b", **RUNNER_ENV)
    client = Client(stack.gateway_url, chaos_stack.new_key())
    events = events_client(client.key)
    try:
        started = time.monotonic()
        run = await client.submit(sim("poison", tools=[{"name": "crash", "args": {}}]))
        await async_wait_for(
            lambda: not any(stack.children[n].alive() for n in names),
            timeout_s=30,
            what="both runners to be killed by the poison run",
        )
        assert (await client.run(run["run_id"]))["status"] == "running"
        runners("a", **RUNNER_ENV)  # a fresh runner: the third delivery
        got = await Follower(events, run["events_url"]).follow(timeout_s=30)
        dead_after_s = time.monotonic() - started
        record = await client.run(run["run_id"])
        crashes = [r for r in chaos_stack.ledger({run["run_id"]}) if r["kind"] == "crash"]
        dead = await dead_letters(stack.redis_url, run["run_id"])
        record_figures(
            "dead letters",
            max_deliveries=MAX_DELIVERIES,
            executions=len(crashes),
            runners_killed=2,
            dead_lettered_after_s=dead_after_s,
        )

        assert len(crashes) == MAX_DELIVERIES
        assert record["status"] == "failed" and record["error"]["reason"] == "max_deliveries"
        assert [e.event for e in got][-2:] == ["error", "done"]
        assert got[-2].data["reason"] == "max_deliveries"
        assert got[-1].data["status"] == "failed"
        assert len(dead) == 1 and dead[0]["reason"] == "max_deliveries"
        assert int(dead[0]["deliveries"]) == MAX_DELIVERIES + 1
    finally:
        await events.aclose()
        await client.aclose()
