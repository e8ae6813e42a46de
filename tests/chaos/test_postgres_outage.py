"""Postgres stops for OUTAGE_S under load: fast 503s, then full recovery, nothing lost.

While Postgres is down, a client keeps calling the public API (submit, read a
run, open its event stream): every answer is a 503 with a JSON error naming
what is down, in under a second. Runs in flight keep their leases (Redis is
up) and retry their checkpoints; when Postgres is back every run accepted
before the outage, and every run submitted after it, finishes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from relay_devstack.harness import async_wait_for
from tests.chaos.client import Client, events_client, sim
from tests.chaos.kit import ChaosStack, StartRunner, record_figures

OUTAGE_S = 20.0
PROBE_EVERY_S = 0.25
FAST_S = 1.0
RUNS_BEFORE = 20
RUNS_AFTER = 10
RUNNER_ENV = {"RELAY_LEASE_TTL_S": "5", "RELAY_RUNNER_CONCURRENCY": "40"}


def message(i: int) -> str:
    return sim(f"job {i}", tools=[{"name": "wait", "args": {"seconds": 6}}], tokens=10)


async def probe(http: httpx.AsyncClient, method: str, url: str, **kw: Any) -> dict[str, Any]:
    """One call during the outage: its status, time and error body."""
    started = time.monotonic()
    try:
        resp = await http.request(method, url, **kw)
        body = (
            resp.json()
            if resp.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        status = resp.status_code
    except httpx.HTTPError as exc:
        body, status = {"transport": type(exc).__name__}, 0
    return {
        "what": f"{method} {url}",
        "status": status,
        "s": time.monotonic() - started,
        "body": body,
    }


async def probe_outage(client: Client, run: dict[str, Any], until: float) -> list[dict[str, Any]]:
    """Submit, read and stream, again and again, until `until` (monotonic)."""
    results = []
    async with events_client(client.key) as events:
        while time.monotonic() < until:
            results.append(
                await probe(client.http, "POST", "/v1/runs", json={"message": "during outage"})
            )
            results.append(await probe(client.http, "GET", f"/v1/runs/{run['run_id']}"))
            results.append(await probe(events, "GET", run["events_url"]))
            await asyncio.sleep(PROBE_EVERY_S)
    return results


async def test_postgres_stops_under_load(chaos_stack: ChaosStack, runners: StartRunner) -> None:
    stack = chaos_stack.stack
    postgres = stack.postgres
    assert postgres is not None
    [runner] = runners("a", **RUNNER_ENV)
    client = Client(stack.gateway_url, chaos_stack.new_key())
    try:
        before = await client.submit_all([message(i) for i in range(RUNS_BEFORE)])
        await async_wait_for(
            lambda: chaos_stack.in_flight(runner) >= RUNS_BEFORE // 2,
            timeout_s=30,
            what="runs in flight",
        )
        in_flight = chaos_stack.in_flight(runner)
        stopped = time.monotonic()
        await asyncio.to_thread(postgres.stop)
        try:
            probes = await probe_outage(client, before[0], until=stopped + OUTAGE_S)
        finally:
            await asyncio.to_thread(postgres.start)
        restarted = time.monotonic()
        first = await client.submit_retrying(message(0), timeout_s=30)
        first_accepted_s = time.monotonic() - restarted
        after = [first, *await client.submit_all([message(i) for i in range(1, RUNS_AFTER)])]
        runs = before + after
        records = await client.wait_terminal([r["run_id"] for r in runs], timeout_s=90)
        recovered_s = time.monotonic() - restarted

        slow = [p for p in probes if p["s"] >= FAST_S]
        not_503 = [p for p in probes if p["status"] != 503]
        record_figures(
            "Postgres stopped",
            outage_s=OUTAGE_S,
            runs=len(runs),
            in_flight_at_stop=in_flight,
            probes=len(probes),
            probes_503=len(probes) - len(not_503),
            max_probe_s=max(p["s"] for p in probes),
            reasons=sorted({str(p["body"].get("error", {}).get("reason")) for p in probes}),
            first_accepted_after_s=first_accepted_s,
            recovered_s=recovered_s,
            succeeded=sum(r["status"] == "succeeded" for r in records.values()),
        )

        assert len(probes) >= 30
        assert not not_503, not_503[:3]
        assert not slow, slow[:3]
        assert all(p["body"]["error"]["message"] for p in probes)
        assert {p["body"]["error"]["reason"] for p in probes} == {"state_unavailable"}
        assert len(records) == RUNS_BEFORE + RUNS_AFTER
        unsucceeded = {
            i: (r["status"], r["error"]) for i, r in records.items() if r["status"] != "succeeded"
        }
        assert not unsucceeded, unsucceeded
    finally:
        await client.aclose()
