"""kill -9 a runner with 30 runs in flight; a second runner finishes them all.

Every run calls the non-idempotent `ledger` tool, whose executions are
appended to a durable file by the tool itself (tools_plugin.py). The runner is
killed once every run has executed it, with the runs in three places:

- `stream`: the tool is done and recorded, the final answer is streaming;
- `held`: inside the tool, AFTER its effect and BEFORE its result could be
  recorded (the tool holds for a minute): the new attempt must not run it
  again, and tells the model the outcome is unknown;
- `wait`: the tool is done and recorded, a second (idempotent) tool runs.

A client follows every run, dropping its connection every few events and
resuming with Last-Event-ID; what it received must be exactly the full replay.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

from relay_agent import UNKNOWN_OUTCOME
from relay_devstack.harness import async_wait_for
from tests.chaos.client import (
    Client,
    Follower,
    Received,
    assert_same_stream,
    events_client,
    read_events,
    sim,
)
from tests.chaos.kit import ChaosStack, StartRunner, record_figures

RUNS = 30
GROUPS = ("stream", "held", "wait")
RUNNER_ENV = {"RELAY_LEASE_TTL_S": "3", "RELAY_RUNNER_CONCURRENCY": "40"}


def message(i: int) -> str:
    group = GROUPS[i % 3]
    hold_s = 60 if group == "held" else 0
    ledger = {"name": "ledger", "args": {"note": f"n{i}", "hold_s": hold_s}}
    if group == "stream":
        return sim(f"job {i}", tools=[ledger], tokens=200, token_delay_ms=40)
    if group == "held":
        return sim(f"job {i}", tools=[ledger], tokens=10)
    wait = {"name": "wait", "args": {"seconds": 8}}
    return sim(f"job {i}", tools=[ledger, wait], tokens=10)


def in_position(group: str, got: list[Received]) -> bool:
    """Whether the run is where the kill must find it."""
    if group == "stream":
        return any(e.event == "token" and e.data["step"] == 1 for e in got)
    if group == "wait":
        return any(e.event == "tool_start" and e.data["name"] == "wait" for e in got)
    return any(e.event == "tool_start" and e.data["name"] == "ledger" for e in got)


def tool_results(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The run's tool results by tool name (names from the matching tool_use)."""
    names = {
        b["id"]: b["name"] for m in messages for b in m["content"] if b.get("type") == "tool_use"
    }
    return {
        names[b["tool_use_id"]]: b
        for m in messages
        for b in m["content"]
        if b.get("type") == "tool_result"
    }


async def test_kill9_with_30_runs_in_flight(chaos_stack: ChaosStack, runners: StartRunner) -> None:
    stack = chaos_stack.stack
    [first] = runners("a", **RUNNER_ENV)
    client = Client(stack.gateway_url, chaos_stack.new_key())
    events = events_client(client.key)
    try:
        runs = await client.submit_all([message(i) for i in range(RUNS)])
        run_ids = {r["run_id"] for r in runs}
        followers = [Follower(events, r["events_url"], drop_every=20) for r in runs]
        following = [asyncio.create_task(f.follow(timeout_s=150)) for f in followers]

        def ready_to_kill() -> bool:
            executed = len(chaos_stack.ledger(run_ids)) == RUNS
            return executed and all(
                in_position(GROUPS[i % 3], f.received) for i, f in enumerate(followers)
            )

        try:
            await async_wait_for(ready_to_kill, timeout_s=60, what="every run in position")
        except AssertionError as exc:
            late = [
                (i, [e.event for e in f.received][-5:], f.errors[-1:])
                for i, f in enumerate(followers)
                if not in_position(GROUPS[i % 3], f.received)
            ]
            executed = len(chaos_stack.ledger(run_ids))
            raise AssertionError(f"{exc}; executed {executed}; {late}") from None
        assert not any(f.done for f in followers), "a run finished before the kill"
        killed_at = time.monotonic()
        stack.kill(first, signal.SIGKILL)
        [second] = runners("b", **RUNNER_ENV)
        await asyncio.wait_for(asyncio.gather(*following), timeout=150)
        recovered_s = time.monotonic() - killed_at

        records = await client.wait_terminal(run_ids, timeout_s=10)
        replays = [await read_events(events, r["events_url"]) for r in runs]
        ledger = chaos_stack.ledger(run_ids)
        per_key = Counter(row["key"] for row in ledger)
        duplicates = sum(n - 1 for n in per_key.values())
        received_ids = [[e.id for e in f.received] for f in followers]
        stream_dupes = sum(len(ids) - len(set(ids)) for ids in received_ids)
        stream_gaps = sum(
            len({e.id for e in replay} - set(ids))
            for ids, replay in zip(received_ids, replays, strict=True)
        )
        record_figures(
            "kill -9 runner",
            runs=RUNS,
            recovered_s=recovered_s,
            tool_executions=len(ledger),
            duplicate_executions=duplicates,
            stream_connections=sum(f.connections for f in followers),
            stream_duplicate_ids=stream_dupes,
            stream_gaps=stream_gaps,
        )

        assert duplicates == 0 and len(ledger) == RUNS
        assert Counter(row["run_id"] for row in ledger) == dict.fromkeys(run_ids, 1)
        assert all(row["key"] for row in ledger), "the tool got no dedupe key"
        assert {r["status"] for r in records.values()} == {"succeeded"}
        assert {r["attempts"] for r in records.values()} == {2}
        assert chaos_stack.runner_metric(second, "relay_runner_runs_finished_total") == RUNS

        for i, (run, follower, replay) in enumerate(zip(runs, followers, replays, strict=True)):
            assert_same_stream(follower.received, replay)
            kinds = [e.event for e in replay]
            assert kinds.count("done") == 1 and kinds[-1] == "done"
            assert [e.data["attempt"] for e in replay if e.event == "start"] == [1, 2]
            resumed = [e.data for e in replay if e.event == "resumed"]
            from_step = 1 if GROUPS[i % 3] == "stream" else 0
            assert resumed == [{"attempt": 2, "from_step": from_step}], (i, resumed)
            results = tool_results(await client.messages(run["conversation_id"]))
            if GROUPS[i % 3] == "held":
                assert results["ledger"]["content"] == UNKNOWN_OUTCOME
                assert results["ledger"]["is_error"] is True
            else:
                assert results["ledger"]["content"] == f"recorded n{i}"
    finally:
        await events.aclose()
        await client.aclose()
