"""Leases: a live runner keeps its runs however long they take; a frozen one loses them.

- A tool that outlasts the lease TTL several times (even one that freezes the
  runner's event loop) is never stolen from a live runner: the heartbeat
  thread keeps the lease.
- SIGSTOP a runner past its lease (TTL 3 s), let another take its two runs
  over, SIGCONT it: its late writes are refused (the fenced event XADD drops
  them; state answers 409 `stale_attempt` to its attempt number), and each
  run's transcript and stream are the new attempt's.

Three runners serve the module, started together before any run: the queue
decides who takes what, so the runner(s) holding the two runs are the ones
frozen, and one of the others takes over (two runs leave at least one of
three idle). Starting a successor only after the runs had begun raced the
runs' end on a busy machine.
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from relay_core import state_api
from relay_devstack.harness import async_wait_for
from tests.chaos.client import Client, Follower, Received, events_client, read_events, sim
from tests.chaos.kit import ChaosStack, StartRunner, record_figures

LEASE_TTL_S = 3.0
RUNNER_ENV = {"RELAY_LEASE_TTL_S": str(LEASE_TTL_S)}
TOKENS = 150
FINISHED = "relay_runner_runs_finished_total"
RELEASED = "relay_runner_runs_released_total"
FENCED = "relay_runner_events_fenced_total"


@pytest.fixture(scope="module")
def trio(runners: StartRunner) -> list[str]:
    return runners("a", "b", "c", **RUNNER_ENV)


def attempts_seen(got: list[Received]) -> list[int]:
    return [e.data["attempt"] for e in got if e.event == "start"]


async def test_a_long_or_blocking_tool_is_never_stolen(
    chaos_stack: ChaosStack, trio: list[str]
) -> None:
    stack = chaos_stack.stack
    client = Client(stack.gateway_url, chaos_stack.new_key())
    try:
        slow = await client.submit(
            sim("slow", tools=[{"name": "wait", "args": {"seconds": 3 * LEASE_TTL_S}}], tokens=3)
        )
        frozen = await client.submit(
            sim("frozen", tools=[{"name": "block", "args": {"seconds": 2 * LEASE_TTL_S}}], tokens=3)
        )
        ids = [slow["run_id"], frozen["run_id"]]
        records = await client.wait_terminal(ids, timeout_s=60)
        assert [records[i]["status"] for i in ids] == ["succeeded", "succeeded"]
        assert [records[i]["attempts"] for i in ids] == [1, 1]  # never taken over
        async with events_client(client.key) as events:
            for run in (slow, frozen):
                replay = await read_events(events, run["events_url"])
                assert attempts_seen(replay) == [1]
                assert "resumed" not in [e.event for e in replay]
    finally:
        await client.aclose()


async def late_write(stack_url: str, token: str, run_id: str, path: str, body: dict) -> dict:
    """What the frozen runner's next write to state would be, with its old attempt."""
    async with httpx.AsyncClient(base_url=stack_url, timeout=5) as http:
        resp = await http.post(
            f"{state_api.INTERNAL_PREFIX}/runs/{run_id}/{path}",
            json=body,
            headers={state_api.INTERNAL_TOKEN_HEADER: token},
        )
    assert resp.status_code == 409, resp.text
    return dict(resp.json()["error"])


def total(chaos_stack: ChaosStack, names: list[str], metric: str, **labels: str) -> float:
    return sum(chaos_stack.runner_metric(name, metric, **labels) for name in names)


async def test_sigstop_past_the_lease_then_sigcont(
    chaos_stack: ChaosStack, trio: list[str]
) -> None:
    stack = chaos_stack.stack
    finished_before = {n: chaos_stack.runner_metric(n, FINISHED) for n in trio}
    superseded_before = total(chaos_stack, trio, RELEASED, why="superseded")
    fenced_before = total(chaos_stack, trio, FENCED)
    client = Client(stack.gateway_url, chaos_stack.new_key())
    events = events_client(client.key)
    try:
        talk = await client.submit(sim("talk", tokens=TOKENS, token_delay_ms=40))
        tool = await client.submit(
            sim("tool", tools=[{"name": "wait", "args": {"seconds": 5}}], tokens=5)
        )
        followers = [Follower(events, r["events_url"]) for r in (talk, tool)]
        following = [asyncio.create_task(f.follow(timeout_s=90)) for f in followers]

        def in_position() -> bool:
            tokens = [e for e in followers[0].received if e.event == "token"]
            return len(tokens) >= 5 and any(e.event == "tool_start" for e in followers[1].received)

        await async_wait_for(in_position, timeout_s=30, what="streaming and in the tool")
        frozen = [n for n in trio if chaos_stack.in_flight(n) > 0]
        others = [n for n in trio if n not in frozen]
        assert sum(chaos_stack.in_flight(n) for n in frozen) == 2 and others
        for name in frozen:
            stack.kill(name, signal.SIGSTOP)
        stopped = time.monotonic()
        await async_wait_for(
            lambda: all(attempts_seen(f.received) == [1, 2] for f in followers),
            timeout_s=30,
            what="the other runner to take both runs over",
        )
        taken_over_s = time.monotonic() - stopped
        for name in frozen:
            stack.kill(name, signal.SIGCONT)
        await asyncio.wait_for(asyncio.gather(*following), timeout=60)
        records = await client.wait_terminal([talk["run_id"], tool["run_id"]], timeout_s=10)

        await async_wait_for(
            lambda: total(chaos_stack, trio, RELEASED, why="superseded") - superseded_before == 2,
            timeout_s=10,
            what="the woken runner(s) to give both runs up",
        )
        fenced = total(chaos_stack, trio, FENCED) - fenced_before
        token = stack.config.internal_token
        stale_cp = await late_write(
            stack.state_url,
            token,
            tool["run_id"],
            "checkpoints",
            {"attempt": 1, "step": 0, "kind": "tool_result", "call_index": 0, "payload": {}},
        )
        stale_finish = await late_write(
            stack.state_url, token, talk["run_id"], "finish", {"attempt": 1, "status": "failed"}
        )
        record_figures(
            "SIGSTOP past the lease",
            runs=2,
            frozen_runners=len(frozen),
            lease_ttl_s=LEASE_TTL_S,
            taken_over_after_s=taken_over_s,
            late_events_fenced=int(fenced),
            runs_given_up=2,
        )

        assert all(stack.children[n].alive() for n in frozen), "woken runners live on"
        assert fenced >= 1
        assert stale_cp["type"] == stale_finish["type"] == "stale_attempt"
        assert {r["status"] for r in records.values()} == {"succeeded"}
        assert {r["attempts"] for r in records.values()} == {2}
        finished = {n: chaos_stack.runner_metric(n, FINISHED) - finished_before[n] for n in trio}
        assert sum(finished[n] for n in others) == 2 and not any(finished[n] for n in frozen)
        for run in (talk, tool):
            replay = await read_events(events, run["events_url"])
            kinds = [e.event for e in replay]
            second = kinds.index("start", 1)
            # After the new attempt's start: its own events only, one whole answer.
            assert kinds[second + 1] == "resumed" and kinds.count("done") == 1
            after = replay[second:]
            if run is talk:
                assert [e.event for e in after].count("token") == TOKENS
            messages = await client.messages(run["conversation_id"])
            answers = [
                m for m in messages if m["role"] == "assistant" and m["text"] and m["run_id"]
            ]
            assert len(answers) == 1
            answer_tokens = "".join(e.data["text"] for e in after if e.event == "token")
            assert answers[0]["text"] == answer_tokens
    finally:
        await events.aclose()
        await client.aclose()
