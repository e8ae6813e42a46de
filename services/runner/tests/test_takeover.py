"""Regression tests for takeovers, found by the chaos suite (tests/chaos).

- `test_a_takeover_without_checkpoints_announces_resumed`: an attempt that
  took over a run with no checkpoint yet sent a second `start` but no
  `resumed`, so a client kept the dead attempt's partial text and showed the
  re-sent text twice.
- `test_an_entry_reenqueued_while_the_run_is_in_flight_is_not_lost`: when
  Redis lost its data, the reconciler's new entry reached the runner that
  still executed the run; it was acked as a duplicate, then the execution
  found its lease gone and stopped. The run had no entry left and a fresh
  `enqueued` marker, so nothing ever resumed it.
- `test_entries_read_after_sigterm_go_back_to_the_queue_unclaimed`: a
  blocking read that returned just after SIGTERM had its entries started
  anyway, so a draining runner still took new work.
- `test_a_runner_that_lost_its_lease_leaves_the_entry_alone`: the heartbeat
  re-claimed the queue entry (XCLAIM) even for a lease it had just lost, so a
  runner waking from a pause pulled the entry back from the runner that had
  taken the run over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis as sync_redis
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from runner_testkit import (
    all_clients,
    pending_ids,
    queue_entry,
    run_events,
    sim,
    wait_done,
    wait_for,
)

from relay_core import keys
from relay_core.redis import create_sync_redis, stream_entries
from relay_core.state_api import CreateRunIn
from relay_core.state_client import StateClient
from relay_runner.lease import LeaseKeeper
from relay_runner.worker import Worker


def queue_of(run_id: str) -> str:
    return keys.run_queue("background", run_id)


async def submit(state: StateClient, user: str, message: str) -> str:
    run, _ = await state.create_run(CreateRunIn(user_id=user, message=message, model="sim-default"))
    return run.run_id


async def test_a_takeover_without_checkpoints_announces_resumed(
    start_inproc: Callable[..., Worker], state: StateClient, redis: Redis, user: str
) -> None:
    run_id = await submit(state, user, sim("hi", tokens=3))
    QUEUE = queue_of(run_id)
    try:
        await redis.xgroup_create(QUEUE, keys.RUNNERS_GROUP, id="0", mkstream=True)
    except ResponseError as exc:  # made by an earlier test
        assert "BUSYGROUP" in str(exc)
    entry = await wait_for(lambda: queue_entry(redis, QUEUE, run_id), what="the queue entry")
    # A runner took the entry, claimed the run and died before writing anything.
    await redis.xclaim(QUEUE, keys.RUNNERS_GROUP, "ghost", 0, [entry], idle=600_000,
                       retrycount=1, force=True)  # fmt: skip
    assert (await state.claim_run(run_id, consumer="ghost")).attempt == 1
    await redis.delete(keys.lease(run_id))  # ... and its lease expired
    start_inproc()
    found = await wait_done(redis, run_id)
    assert [e.type for e in found][:2] == ["start", "resumed"]
    assert found[1].data == {"attempt": 2, "from_step": 0}
    assert found[-1].data["status"] == "succeeded"


async def test_an_entry_reenqueued_while_the_run_is_in_flight_is_not_lost(
    start_inproc: Callable[..., Worker], state: StateClient, redis: Redis, user: str
) -> None:
    worker = start_inproc()
    run_id = await submit(
        state, user, sim("slow", tools=[{"name": "wait", "args": {"seconds": 2}}])
    )

    async def in_tool() -> bool:
        return any(e.type == "tool_start" for e in await run_events(redis, run_id))

    await wait_for(in_tool, what="the wait tool to start")
    QUEUE = queue_of(run_id)
    old = await queue_entry(redis, QUEUE, run_id)
    # What Redis losing its data looks like to this run, then the reconciler:
    # the entry is gone, a new one is enqueued, and the lease is gone too.
    await redis.xack(QUEUE, keys.RUNNERS_GROUP, old or "0-0")
    await redis.xdel(QUEUE, old or "0-0")
    new = await redis.xadd(QUEUE, {"run_id": run_id})

    async def delivered() -> bool:
        rows = await redis.xpending_range(QUEUE, keys.RUNNERS_GROUP, min=new, max=new, count=1)
        return bool(rows)

    await wait_for(delivered, what="the new entry to reach the runner running the run")
    await redis.delete(keys.lease(run_id))
    found = await wait_done(redis, run_id, timeout_s=20)
    assert found[-1].data["status"] == "succeeded"
    assert (await state.get_run(run_id)).attempts == 2
    assert worker.in_flight == 0


async def test_entries_read_after_sigterm_go_back_to_the_queue_unclaimed(
    start_inproc: Callable[..., Worker], state: StateClient, redis: Redis, user: str
) -> None:
    worker = start_inproc(block_ms=3000)

    async def blocked() -> bool:  # on the pool's doorbell (relay_runner.streams)
        return any(c.get("cmd") == "xread" for c in await all_clients(redis))

    await wait_for(blocked, what="the worker to block on the doorbell")
    worker.rt.stopping.set()  # what SIGTERM does, while the read is in flight
    run_id = await submit(state, user, sim("late", tokens=2))
    QUEUE = queue_of(run_id)

    async def requeued() -> list[str] | None:
        entries = stream_entries(await redis.xrange(QUEUE))
        found = [eid for eid, f in entries if f.get("run_id") == run_id]
        return found if len(found) == 2 else None

    first, second = await wait_for(requeued, what="the entry to go back on the queue")
    pending = await pending_ids(redis, QUEUE)
    assert first not in pending and second not in pending  # acked; the new one undelivered
    assert await redis.exists(keys.enqueued(run_id))
    assert (await state.get_run(run_id)).attempts == 0  # never claimed
    assert worker.in_flight == 0
    await state.cancel_run(run_id, user_id=user)  # nobody needs to run it


async def test_a_runner_that_lost_its_lease_leaves_the_entry_alone(runner_redis: Any) -> None:
    r = create_sync_redis(runner_redis.url)
    keeper = LeaseKeeper(runner_redis.url, ttl_s=3.0, pool="background", consumer="paused")
    keeper.start()
    try:
        run_id = "run_lost_lease_entry"
        QUEUE = queue_of(run_id)
        try:
            r.xgroup_create(QUEUE, keys.RUNNERS_GROUP, id="0", mkstream=True)
        except sync_redis.ResponseError:
            pass
        eid = str(r.xadd(QUEUE, {"run_id": run_id}))
        # The run was taken over: the entry and the lease belong to another runner.
        r.xclaim(QUEUE, keys.RUNNERS_GROUP, "successor", 0, [eid], force=True)
        r.set(keys.lease(run_id), "successor:2", px=5000)
        keeper.hold(run_id, "paused:1", eid)
        keeper.beat()
        assert keeper.lost(run_id)
        pending = r.xpending_range(QUEUE, keys.RUNNERS_GROUP, eid, eid, 1)
        assert pending[0]["consumer"] == "successor"
        r.xack(QUEUE, keys.RUNNERS_GROUP, eid)
    finally:
        keeper.stop()
        r.close()
