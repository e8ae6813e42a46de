"""Runs executed by the real worker (in this process) against real state, Redis, modelsim."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY
from redis.asyncio import Redis
from runner_testkit import Stack, pending_ids, queue_entry, run_events, sim, wait_done, wait_for

from relay_core import keys, partitions
from relay_core.events import parse_stream_id
from relay_core.logs import run_id_var
from relay_core.redis import is_cluster, stream_entries
from relay_core.state_api import CreateRunIn, DocumentIn
from relay_core.state_client import StateClient
from relay_devstack.rediscluster import each_server
from relay_runner import metrics
from relay_runner.worker import Worker


async def submit(state: StateClient, user: str, message: str, **kw: Any) -> str:
    run, created = await state.create_run(
        CreateRunIn(user_id=user, message=message, model=kw.pop("model", "sim-default"), **kw)
    )
    assert created
    return run.run_id


async def test_a_run_executes_end_to_end(
    runner: Worker, state: StateClient, redis: Redis, user: str
) -> None:
    tools = [{"name": "calculator", "args": {"expression": "6*7"}}]
    run_id = await submit(state, user, sim("compute", tools=tools))
    found = await wait_done(redis, run_id)
    types = [e.type for e in found]
    assert types[0] == "start" and found[0].data == {"run_id": run_id, "attempt": 1}
    assert types.index("tool_start") < types.index("tool_end") < types.index("done")
    assert types.count("usage") == 2 and types[-1] == "done"
    text = "".join(e.data["text"] for e in found if e.type == "token")
    assert "Tool calculator returned 42." in text
    done = found[-1].data
    assert done["status"] == "succeeded" and done["cost_usd"] > 0
    run = await state.get_run(run_id)
    assert run.status == "succeeded" and run.cost_usd == done["cost_usd"]
    transcript = await state.messages(run.conversation_id, user_id=user)
    shapes = [(m.role, [b["type"] for b in m.content]) for m in transcript.messages]
    assert shapes == [
        ("user", ["text"]),
        ("assistant", ["tool_use"]),
        ("user", ["tool_result"]),
        ("assistant", ["text"]),
    ]
    assert transcript.messages[-1].content[0]["text"] == text
    entry = await queue_entry(redis, keys.run_queue("background", run_id), run_id)
    assert entry is not None and entry not in await pending_ids(
        redis, keys.run_queue("background", run_id)
    )
    assert 0 < await redis.ttl(keys.events(run_id)) <= 86400
    advertised = await redis.hget(
        keys.pool_capacity("background"), runner.rt.settings.consumer_name
    )
    assert isinstance(advertised, str) and advertised.startswith("8:")


class Observed:
    """A runner histogram as it is, plus what each run observed in it (a run's
    code runs under its `run_id_var`): other tests' runs may be claimed by
    this runner meanwhile."""

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        self.by_run: dict[str | None, list[float]] = {}

    def labels(self, pool: str) -> Any:
        child = self.histogram.labels(pool)
        by_run = self.by_run

        class Child:
            def observe(self, value: float) -> None:
                by_run.setdefault(run_id_var.get(), []).append(value)
                child.observe(value)

        return Child()


async def test_queue_wait_and_first_token_are_measured_from_the_entry(
    runner: Worker, state: StateClient, redis: Redis, user: str, monkeypatch: Any
) -> None:
    """The wait a run's user feels, as far as the runner can see it: from the
    queue entry to the claim, and to the first token stored (the model's own
    time to first token included)."""
    waits = Observed(metrics.QUEUE_WAIT)
    firsts = Observed(metrics.FIRST_TOKEN)
    monkeypatch.setattr(metrics, "QUEUE_WAIT", waits)
    monkeypatch.setattr(metrics, "FIRST_TOKEN", firsts)
    exported = ("relay_runner_first_token_seconds_count", {"pool": runner.rt.pool})
    before = REGISTRY.get_sample_value(*exported) or 0
    started = time.time()
    run_id = await submit(state, user, sim("hello", tokens=3, ttft_ms=300))
    found = await wait_done(redis, run_id)
    took = time.time() - started
    assert found[-1].data["status"] == "succeeded"
    ((wait,), (first,)) = waits.by_run[run_id], firsts.by_run[run_id]  # once each
    assert 0 <= wait < first  # claimed before the model's first token
    assert 0.3 <= first <= took + 0.01  # the model's 300 ms in it, no more than it all took
    assert (REGISTRY.get_sample_value(*exported) or 0) >= before + 1  # and on /metrics


async def test_cancel_ends_the_run_and_closes_the_model_stream(
    runner: Worker, state: StateClient, redis: Redis, user: str, tag: str, stack: Stack
) -> None:
    run_id = await submit(state, user, sim("talk", tokens=5000, token_delay_ms=5, tag=tag))

    async def streaming() -> bool:
        return any(e.type == "token" for e in await run_events(redis, run_id))

    await wait_for(streaming, what="the first token")
    await state.cancel_run(run_id, user_id=user)
    found = await wait_done(redis, run_id)
    assert found[-1].data["status"] == "cancelled"
    assert (await state.get_run(run_id)).status == "cancelled"

    async def closed_early() -> bool:
        return (await stack.modelsim_stats(tag))["streams_closed_early"] == 1

    await wait_for(closed_early, what="modelsim to see the stream closed early")
    transcript = await state.messages((await state.get_run(run_id)).conversation_id, user_id=user)
    partial = transcript.messages[-1]
    assert partial.role == "assistant" and partial.content[0]["text"]


async def test_tools_see_only_their_users_documents_and_record_runs_once(
    runner: Worker, state: StateClient, redis: Redis, user: str, stack: Stack
) -> None:
    await state.add_document(DocumentIn(user_id=user, title="Lease guide", body="renew a lease"))
    await state.add_document(DocumentIn(user_id="someone-else", title="Other lease", body="lease"))
    tools = [{"name": "search_docs", "args": {"query": "lease"}},
             {"name": "record", "args": {"value": "v1"}}]  # fmt: skip
    run_id = await submit(state, user, sim("look", tools=tools))
    found = await wait_done(redis, run_id)
    assert found[-1].data["status"] == "succeeded"
    text = "".join(e.data["text"] for e in found if e.type == "token")
    assert "Lease guide" in text and "Other lease" not in text
    assert "Tool record returned recorded v1." in text
    assert stack.records(run_id) == ["v1"]


async def test_fenced_writes_stop_a_runner_whose_lease_was_taken(
    runner: Worker, state: StateClient, redis: Redis, user: str
) -> None:
    run_id = await submit(state, user, sim("talk", tokens=5000, token_delay_ms=5))

    async def streaming() -> bool:
        return any(e.type == "token" for e in await run_events(redis, run_id))

    await wait_for(streaming, what="the first token")
    await redis.set(keys.lease(run_id), "intruder:99", px=60_000)  # a newer attempt, say

    async def stopped() -> bool:
        return runner.in_flight == 0

    await wait_for(stopped, what="the runner to give the run up")
    found = await run_events(redis, run_id)
    assert "done" not in [e.type for e in found]  # the new owner writes it, not us
    entry = await queue_entry(redis, keys.run_queue("background", run_id), run_id)
    assert entry in await pending_ids(redis, keys.run_queue("background", run_id))  # nor acks it
    # Clean up: nobody should resume this run in a later test.
    await state.cancel_run(run_id, user_id=user)
    await redis.xack(keys.run_queue("background", run_id), keys.RUNNERS_GROUP, entry or "0-0")


async def test_unknown_model_fails_the_run(
    runner: Worker, state: StateClient, redis: Redis, user: str
) -> None:
    run_id = await submit(state, user, "hi", model="no-such-model")
    found = await wait_done(redis, run_id)
    errors = [e.data for e in found if e.type == "error"]
    assert errors and errors[0]["reason"] == "model_unavailable"
    assert found[-1].data["status"] == "failed"
    assert (await state.get_run(run_id)).error == errors[0]


async def test_too_many_deliveries_go_to_the_dead_letters(
    start_inproc: Callable[..., Worker], state: StateClient, redis: Redis, user: str
) -> None:
    run_id = await submit(state, user, "hi", kind="interactive")
    queue = keys.run_queue("interactive", run_id)
    try:
        await redis.xgroup_create(queue, keys.RUNNERS_GROUP, id="0", mkstream=True)
    except Exception as exc:  # BUSYGROUP
        assert "BUSYGROUP" in str(exc)
    entry = await wait_for(lambda: queue_entry(redis, queue, run_id), what="the queue entry")
    # Five runners took it and died: delivered 5 times, idle for long.
    await redis.xclaim(queue, keys.RUNNERS_GROUP, "ghost", 0, [entry], idle=600_000,
                       retrycount=5, force=True)  # fmt: skip
    start_inproc(runner_pool="interactive", max_deliveries=5)
    found = await wait_done(redis, run_id)
    assert [e.type for e in found] == ["error", "done"]
    assert found[0].data["reason"] == "max_deliveries"
    assert found[-1].data["status"] == "failed"
    run = await state.get_run(run_id)
    assert run.status == "failed" and run.error is not None
    assert run.error["reason"] == "max_deliveries"
    entries = stream_entries(await redis.xrange(keys.QUEUE_DEAD))
    dead = [f for _, f in entries if f.get("run_id") == run_id]
    assert len(dead) == 1 and dead[0]["deliveries"] == "6" and dead[0]["entry_id"] == entry
    assert entry not in await pending_ids(redis, queue)


async def test_concurrency_bounds_runs_in_flight(
    start_inproc: Callable[..., Worker], state: StateClient, redis: Redis, user: str
) -> None:
    worker = start_inproc(runner_concurrency=2)
    run_ids = [
        await submit(state, f"{user}-{i}", sim("talk", tokens=60, token_delay_ms=5))
        for i in range(3)
    ]
    finished = [await wait_done(redis, run_id) for run_id in run_ids]
    assert all(found[-1].data["status"] == "succeeded" for found in finished)
    # (start, the run's last own event: `usage`) in Redis' clock. `done` is not
    # the bound: state writes it as the run finishes, which may land a moment
    # after the freed slot already let the next run start.
    spans = sorted(
        (
            parse_stream_id(found[0].id or "")[0],
            parse_stream_id(next(e.id for e in found if e.type == "usage") or "")[0],
        )
        for found in finished
    )
    # The last run to start started only after one of the first two had finished
    # its work (60 tokens 5 ms apart: without the bound all three start at once).
    assert spans[2][0] >= min(spans[0][1], spans[1][1])
    assert worker.in_flight == 0


async def mget_calls(redis: Redis) -> int:
    """MGETs served so far, by every server (every primary of a cluster)."""
    total = 0
    async for server in each_server(redis, primaries=True):
        stats = await server.info("commandstats")
        total += int(stats.get("cmdstat_mget", {}).get("calls", 0))
    return total


async def test_concurrent_runs_share_event_writes_and_one_cancel_poll(
    start_inproc: Callable[..., Worker], state: StateClient, redis: Redis, user: str
) -> None:
    """The runner's CPU per run came from a Redis round trip per token (the fenced
    XADD) and another per run every 0.1 s (its cancel flag). Now the writes of
    runs that wait together share one script call, and one MGET per poll reads
    every run's flag, without changing what a client sees."""
    worker = start_inproc(runner_concurrency=8, event_linger_s=0.005)
    mgets_before = await mget_calls(redis)
    started = time.monotonic()
    run_ids = [
        await submit(state, f"{user}-{i}", sim("talk", tokens=40, token_delay_ms=10))
        for i in range(8)
    ]
    finished = [await wait_done(redis, run_id) for run_id in run_ids]
    elapsed = time.monotonic() - started
    for run_id, found in zip(run_ids, finished, strict=True):
        types = [e.type for e in found]
        assert types[:2] == ["start", "token"] and types[-2:] == ["usage", "done"]
        assert types.count("token") == 40 and found[-1].data["status"] == "succeeded"
        run = await state.get_run(run_id)
        transcript = await state.messages(run.conversation_id, user_id=run.user_id)
        text = "".join(e.data["text"] for e in found if e.type == "token")
        assert transcript.messages[-1].content[0]["text"] == text  # every token, in order
    publisher = worker.rt.publisher
    assert publisher.writes == 8 * 42  # start, 40 tokens, usage (`done` is not fenced)
    assert publisher.calls < publisher.writes / 2
    mgets = await mget_calls(redis) - mgets_before
    polls = elapsed / worker.rt.settings.cancel_check_s
    # One MGET per poll (on a cluster one per slot, pipelined: a round trip per node).
    per_poll = len({partitions.of(r) for r in run_ids}) + 1 if is_cluster(redis) else 1
    assert mgets <= per_poll * (len(run_ids) + polls + 2)  # not one per run per poll
