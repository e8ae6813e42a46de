"""Durable cancel: before the run is claimed, during a tool call, during token streaming.

Each time the run ends `cancelled` with a `done` event within one step: no
model call after a cancelled tool, a few tokens at most after a cancel in the
middle of a turn, and modelsim sees the model stream closed early. A run
cancelled before any runner claimed it is never executed at all, even by a
runner that had already received its queue entry when it was paused.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

from relay_devstack.harness import async_wait_for
from tests.chaos.client import Client, Follower, events_client, sim, stream_ms
from tests.chaos.kit import ChaosStack, StartRunner, record_figures

ONE_STEP_S = 2.0  # a cancel is honoured at the next check: every 0.1 s and every token


async def test_cancel_before_claim_during_a_tool_and_while_streaming(
    chaos_stack: ChaosStack, runners: StartRunner
) -> None:
    stack = chaos_stack.stack
    [runner] = runners("a")
    client = Client(stack.gateway_url, chaos_stack.new_key())
    events = events_client(client.key)
    tags = {name: f"cancel-{name}-{uuid.uuid4().hex[:8]}" for name in ("queued", "tool", "talk")}
    figures: dict[str, float] = {}
    try:
        # 1. Before claim: the only runner is paused (SIGSTOP) when the run arrives.
        stack.kill(runner, signal.SIGSTOP)
        try:
            queued = await client.submit(sim("never", tokens=5, tag=tags["queued"]))
            cancelled = await client.cancel(queued["run_id"])
            assert cancelled["status"] == "cancelled"
            done = await Follower(events, queued["events_url"]).follow(timeout_s=10)
        finally:
            stack.kill(runner, signal.SIGCONT)
        assert [e.event for e in done] == ["done"] and done[0].data["status"] == "cancelled"
        # The runner now sees the entry, finds the run finished and drops it.
        await async_wait_for(
            lambda: (
                chaos_stack.runner_metric(
                    runner, "relay_runner_claim_conflicts_total", reason="terminal"
                )
                >= 1
            ),
            timeout_s=15,
            what="the runner to drop the cancelled run's entry",
        )
        assert chaos_stack.modelsim_stats(tags["queued"])["requests_total"] == 0
        assert (await client.run(queued["run_id"]))["attempts"] == 0

        # 2. During a tool call.
        tool = await client.submit(
            sim("wait", tools=[{"name": "wait", "args": {"seconds": 60}}], tag=tags["tool"])
        )
        follower = Follower(events, tool["events_url"])
        following = asyncio.create_task(follower.follow(timeout_s=30))
        await async_wait_for(
            lambda: any(e.event == "tool_start" for e in follower.received),
            timeout_s=20,
            what="the tool to start",
        )
        asked = time.monotonic()
        await client.cancel(tool["run_id"])
        got = await asyncio.wait_for(following, timeout=ONE_STEP_S + 5)
        figures["tool_cancel_s"] = time.monotonic() - asked
        tail = [e.event for e in got[[e.event for e in got].index("tool_start") :]]
        assert tail == ["tool_start", "tool_end", "done"], tail
        assert got[-1].data["status"] == "cancelled"
        assert chaos_stack.modelsim_stats(tags["tool"])["requests_total"] == 1  # no next turn
        results = [
            b
            for m in await client.messages(tool["conversation_id"])
            for b in m["content"]
            if b.get("type") == "tool_result"
        ]
        assert len(results) == 1 and "interrupted" in results[0]["content"]

        # 3. During token streaming.
        talk = await client.submit(sim("talk", tokens=3000, token_delay_ms=10, tag=tags["talk"]))
        follower = Follower(events, talk["events_url"])
        following = asyncio.create_task(follower.follow(timeout_s=30))
        await async_wait_for(
            lambda: sum(e.event == "token" for e in follower.received) >= 10,
            timeout_s=20,
            what="ten tokens",
        )
        asked = time.monotonic()
        asked_ms = time.time() * 1000
        await client.cancel(talk["run_id"])
        got = await asyncio.wait_for(following, timeout=ONE_STEP_S + 5)
        figures["stream_cancel_s"] = time.monotonic() - asked
        assert got[-1].event == "done" and got[-1].data["status"] == "cancelled"
        late_tokens = [e for e in got if e.event == "token" and stream_ms(e.id) > asked_ms]
        stats = await async_wait_for(
            lambda: (
                (s := chaos_stack.modelsim_stats(tags["talk"]))["streams_closed_early"] == 1 and s
            ),
            timeout_s=10,
            what="modelsim to see the stream closed early",
        )
        record_figures(
            "cancel",
            before_claim_model_requests=0,
            tool_cancel_s=figures["tool_cancel_s"],
            stream_cancel_s=figures["stream_cancel_s"],
            tokens_after_cancel=len(late_tokens),
            tokens_generated=stats["tokens_generated"],
            streams_closed_early=stats["streams_closed_early"],
        )
        assert figures["tool_cancel_s"] < ONE_STEP_S
        assert figures["stream_cancel_s"] < ONE_STEP_S
        assert stats["tokens_generated"] < 3000 and stats["streams_open"] == 0
        assert len(late_tokens) < 50, len(late_tokens)
        record = await client.run(talk["run_id"])
        assert record["status"] == "cancelled" and record["finished_at"]
    finally:
        await events.aclose()
        await client.aclose()


async def test_a_cancel_accepted_while_redis_is_unreachable_still_stops_the_run(
    chaos_stack: ChaosStack, runners: StartRunner
) -> None:
    """Redis is down for a moment when the cancel arrives (and comes back with
    its data, the run's lease included): the cancel is recorded in Postgres
    (202) but its fast-path flag could not be raised. The runner learns it at
    its next checkpoint and stops at the next step instead of finishing."""
    stack = chaos_stack.stack
    assert stack.redis is not None
    runners("a")
    client = Client(stack.gateway_url, chaos_stack.new_key())
    events = events_client(client.key)
    tag = f"cancel-blip-{uuid.uuid4().hex[:8]}"
    try:
        run = await client.submit(
            sim("wait", tools=[{"name": "wait", "args": {"seconds": 6}}], tokens=5, tag=tag)
        )
        follower = Follower(events, run["events_url"])
        following = asyncio.create_task(follower.follow(timeout_s=60))
        await async_wait_for(
            lambda: any(e.event == "tool_start" for e in follower.received),
            timeout_s=20,
            what="the tool to start",
        )
        await asyncio.to_thread(stack.redis.stop)
        try:
            cancelled = await client.cancel(run["run_id"])
        finally:
            await asyncio.to_thread(stack.redis.start)
        assert cancelled["status"] == "running"  # recorded; the runner must stop it
        got = await asyncio.wait_for(following, timeout=30)
        assert got[-1].data["status"] == "cancelled"
        assert chaos_stack.modelsim_stats(tag)["requests_total"] == 1  # no next turn
        assert (await client.run(run["run_id"]))["status"] == "cancelled"
    finally:
        await events.aclose()
        await client.aclose()
