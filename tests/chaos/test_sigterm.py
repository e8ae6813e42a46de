"""SIGTERM a runner under load: it drains, exits in time, and hands the rest over at once.

The runner holds 16 runs when it gets SIGTERM (drain deadline DRAIN_S):

- 8 `short` runs end within the drain, on this runner (one attempt);
- 8 `long` runs are still in a tool at the deadline: they are handed back
  and resume on the other runner at once, long before the lease TTL (60 s
  here, so "at once" cannot be the lease expiring);
- 4 `late` runs submitted once it is draining are not taken by it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx

from relay_devstack.harness import async_wait_for
from tests.chaos.client import Client, Follower, Received, events_client, sim, stream_ms
from tests.chaos.kit import ChaosStack, StartRunner, record_figures

DRAIN_S = 7.0
LEASE_TTL_S = "60"
SHORT_WAIT_S = 5  # ends within the drain: they were all in the tool at SIGTERM
LONG_WAIT_S = 15  # outlasts the drain by 8 s: the slack for starting 16 runs
RUNNER_ENV = {
    "RELAY_LEASE_TTL_S": LEASE_TTL_S,
    "RELAY_DRAIN_TIMEOUT_S": str(DRAIN_S),
    "RELAY_RUNNER_CONCURRENCY": "40",
}


def waiting(seconds: int, i: int) -> str:
    return sim(f"job {i}", tools=[{"name": "wait", "args": {"seconds": seconds}}], tokens=5)


def in_tool(got: list[Received]) -> bool:
    return any(e.event == "tool_start" for e in got)


async def draining(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as http:
        resp = await http.get(url + "/readyz")
    return resp.status_code == 503 and "draining" in resp.text


def first(events: list[Received], kind: str, **match: Any) -> Received | None:
    return next((e for e in events if e.event == kind and match.items() <= e.data.items()), None)


async def test_sigterm_drains_then_hands_over_at_once(
    chaos_stack: ChaosStack, runners: StartRunner
) -> None:
    stack = chaos_stack.stack
    [old] = runners("a", **RUNNER_ENV)
    client = Client(stack.gateway_url, chaos_stack.new_key())
    events = events_client(client.key)
    try:
        short = await client.submit_all([waiting(SHORT_WAIT_S, i) for i in range(8)])
        long = await client.submit_all([waiting(LONG_WAIT_S, i) for i in range(8)])
        followers = {r["run_id"]: Follower(events, r["events_url"]) for r in short + long}
        following = [asyncio.create_task(f.follow(timeout_s=120)) for f in followers.values()]
        await async_wait_for(
            lambda: all(in_tool(f.received) for f in followers.values()),
            timeout_s=30,
            what="all 16 runs in their tool",
        )
        in_flight = httpx.get(stack.url(old) + "/healthz").json()["in_flight"]
        signalled = time.monotonic()
        stack.kill(old, signal.SIGTERM)
        [new] = runners("b", **RUNNER_ENV)
        new_ready_s = time.monotonic() - signalled
        new_ready_ms = time.time() * 1000  # same clock as Redis' stream ids: same machine
        await async_wait_for(lambda: draining(stack.url(old)), timeout_s=5, what="draining")
        late = [await client.submit(sim(f"late {i}", tokens=5)) for i in range(4)]
        child = stack.children[old]
        await async_wait_for(lambda: not child.alive(), timeout_s=DRAIN_S + 15, what="exit")
        exit_s = time.monotonic() - signalled
        await asyncio.wait_for(asyncio.gather(*following), timeout=90)
        everything = short + long + late
        records = await client.wait_terminal([r["run_id"] for r in everything], timeout_s=30)

        handed = {r: f.received for r, f in followers.items() if first(f.received, "status")}
        assert set(handed) == {r["run_id"] for r in long}, "exactly the long runs are handed back"
        handovers = []
        for got in handed.values():
            released, restarted = first(got, "status"), first(got, "start", attempt=2)
            assert released and restarted and "shutting down" in released.data["message"]
            # From the hand-back (or the other runner being up, if later) to the new start.
            available_ms = max(stream_ms(released.id), new_ready_ms)
            handovers.append((stream_ms(restarted.id) - available_ms) / 1000)
            resumed = first(got, "resumed")
            assert resumed and resumed.data == {"attempt": 2, "from_step": 0}
        record_figures(
            "SIGTERM runner",
            runs=len(everything),
            in_flight_at_sigterm=in_flight,
            exit_s=exit_s,
            drain_timeout_s=DRAIN_S,
            handed_over=len(long),
            other_runner_ready_s=new_ready_s,
            max_handover_s=max(handovers),
            lease_ttl_s=float(LEASE_TTL_S),
        )

        assert in_flight == 16
        assert child.proc.returncode == 0
        assert DRAIN_S - 1 < exit_s < DRAIN_S + 5, exit_s
        assert max(handovers) < 5, handovers  # at once, not after the 60 s lease
        assert {r["status"] for r in records.values()} == {"succeeded"}
        assert [records[r["run_id"]]["attempts"] for r in short] == [1] * 8
        assert [records[r["run_id"]]["attempts"] for r in long] == [2] * 8
        assert [records[r["run_id"]]["attempts"] for r in late] == [1] * 4
        assert chaos_stack.runner_metric(new, "relay_runner_runs_finished_total") == 12
        for follower in followers.values():
            kinds = [e.event for e in follower.received]
            assert kinds.count("done") == 1 and kinds[-1] == "done"
    finally:
        await events.aclose()
        await client.aclose()
