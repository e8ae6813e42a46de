"""Redis restarts EMPTY in the middle of 50 runs: every accepted run still finishes.

Redis is down for REDIS_DOWN_S first: submitting answers a fast 503 naming
Redis (reading a run, which needs only Postgres, still answers).

Postgres is the truth: state's reconciler (every second here, runs older than
2 s) re-enqueues the runs that are queued or running with neither a queue
entry marker nor a live lease; runners recreate their consumer group, find
their leases gone and stop writing; the re-enqueued runs resume from their
checkpoints. Submissions while Redis is down get 503 and are retried with
the same Idempotency-Key, as a client would.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from relay_core.events import TERMINAL_STATUSES
from relay_devstack.harness import async_wait_for
from tests.chaos.client import Client, events_client, read_events, sim
from tests.chaos.kit import ChaosStack, StartRunner, record_figures

# Run again on Redis 7 by `make test-redis7` (the stack's own Redis is not
# marked automatically): recovering from an empty Redis (consumer groups
# recreated, queues refilled by the reconciler) on the server production runs.
pytestmark = pytest.mark.redis

RUNS = 50
REDIS_DOWN_S = 3.0
FAST_S = 1.0
RUNNER_ENV = {"RELAY_LEASE_TTL_S": "3", "RELAY_RUNNER_CONCURRENCY": "40"}


def message(i: int) -> str:
    if i % 2:
        return sim(f"talk {i}", tokens=60, token_delay_ms=30)
    return sim(f"tool {i}", tools=[{"name": "wait", "args": {"seconds": 2}}], tokens=10)


async def probe_while_down(client: Client, run_id: str, until: float) -> list[dict[str, Any]]:
    """Submit and read again and again until `until` (monotonic): status, time, reason."""
    probes = []
    while time.monotonic() < until:
        for what in ("submit", "read"):
            started = time.monotonic()
            if what == "submit":
                resp = await client.http.post("/v1/runs", json={"message": "Redis is down"})
            else:
                resp = await client.http.get(f"/v1/runs/{run_id}")
            error = resp.json().get("error", {}) if resp.status_code >= 400 else {}
            elapsed = time.monotonic() - started
            probes.append(
                {
                    "what": what,
                    "status": resp.status_code,
                    "s": elapsed,
                    "reason": error.get("reason"),
                }
            )
        await asyncio.sleep(0.2)
    return probes


async def test_redis_restarts_empty_under_load(
    chaos_stack: ChaosStack, runners: StartRunner
) -> None:
    stack = chaos_stack.stack
    assert stack.redis is not None
    runners("a", "b", **RUNNER_ENV)
    client = Client(stack.gateway_url, chaos_stack.new_key())
    reenqueued_before = chaos_stack.state_metric("relay_state_reconciler_reenqueued_total")
    try:
        before = await client.submit_all([message(i) for i in range(RUNS // 2)])
        ids = [r["run_id"] for r in before]

        async def some_running() -> bool:
            runs = [await client.run(i) for i in ids]
            return sum(r["status"] == "running" for r in runs) >= 10

        await async_wait_for(some_running, timeout_s=30, what="10 runs running")
        statuses = [(await client.run(i))["status"] for i in ids]
        wiped = time.monotonic()
        await asyncio.to_thread(stack.redis.stop)
        try:
            probes = await probe_while_down(client, ids[0], until=wiped + REDIS_DOWN_S)
        finally:
            stack.redis.wipe()
            await asyncio.to_thread(stack.redis.start)
        after = [
            await client.submit_retrying(message(i), timeout_s=30) for i in range(RUNS // 2, RUNS)
        ]
        runs = before + after
        records = await client.wait_terminal([r["run_id"] for r in runs], timeout_s=120)
        recovered_s = time.monotonic() - wiped
        reenqueued = (
            chaos_stack.state_metric("relay_state_reconciler_reenqueued_total") - reenqueued_before
        )
        record_figures(
            "Redis restarted empty",
            runs=len(runs),
            running_at_wipe=statuses.count("running"),
            finished_at_wipe=sum(s in TERMINAL_STATUSES for s in statuses),
            reenqueued_by_reconciler=int(reenqueued),
            redis_down_s=REDIS_DOWN_S,
            submit_probes_503=sum(p["status"] == 503 for p in probes if p["what"] == "submit"),
            max_probe_s=max(p["s"] for p in probes),
            recovered_s=recovered_s,
            succeeded=sum(r["status"] == "succeeded" for r in records.values()),
        )

        assert all(p["s"] < FAST_S for p in probes), probes
        submits = [p for p in probes if p["what"] == "submit"]
        assert submits and all(p["status"] == 503 for p in submits), submits
        assert {p["reason"] for p in submits} == {"redis_unavailable"}
        assert all(p["status"] == 200 for p in probes if p["what"] == "read")
        assert len(records) == RUNS
        assert {r["status"] for r in records.values()} == {"succeeded"}
        assert reenqueued > 0
        async with events_client(client.key) as events:
            for run in runs:
                replay = await read_events(events, run["events_url"])
                assert replay[-1].event == "done", run["run_id"]
                assert replay[-1].data["status"] == "succeeded"
                assert [e.event for e in replay].count("done") == 1
    finally:
        await client.aclose()
