"""The runner's queue operations against a real Redis: the partitioned queue read
fairly, the doorbell, hand-back, requeue, autoclaim.

(Event writes: test_publish.py and test_eventlog.py; `done` is
`relay_core.run_protocol.write_done`, tested in relay-core.)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from relay_core import keys, partitions, run_protocol
from relay_core.redis import create_redis
from relay_runner.streams import Entry, LayoutMismatch, Queue


@pytest.fixture
async def r(runner_redis: object) -> AsyncIterator[Redis]:
    client = create_redis(runner_redis.url)  # type: ignore[attr-defined]
    yield client
    await client.aclose()


def new_run_id(partition: int | None = None) -> str:
    while True:
        run_id = f"run_{uuid.uuid4().hex}"
        if partition is None or partitions.of(run_id) == partition:
            return run_id


async def drain(queue: Queue, r: Redis) -> None:
    """Take (and ack) whatever earlier tests left on the pool's queue."""
    while got := await queue.read(r, count=1000, block_ms=1):
        for e in got:
            await queue.ack(e.stream, e.id)


async def test_hand_back_releases_only_our_lease_and_requeues(r: Redis) -> None:
    queue = Queue(r, pool="interactive", consumer="c1")
    await queue.ensure_group()
    await queue.ensure_group()  # BUSYGROUP is fine
    run_id = new_run_id()
    stream = keys.run_queue("interactive", run_id)
    await r.xadd(stream, {"run_id": run_id})
    entry = next(e for e in await queue.read(r, count=100, block_ms=10) if e.run_id == run_id)
    assert entry.stream == stream
    await r.set(keys.lease(run_id), "c1:1", px=10_000)
    await queue.hand_back(entry, lease_value="c9:9")  # not ours: kept
    assert await r.get(keys.lease(run_id)) == "c1:1"
    newest = next(e for e in await queue.read(r, count=100, block_ms=10) if e.run_id == run_id)
    await queue.hand_back(newest, lease_value="c1:1")
    assert await r.get(keys.lease(run_id)) is None
    assert await r.get(keys.enqueued(run_id)) == "1"
    again = [e for e in await queue.read(r, count=100, block_ms=10) if e.run_id == run_id]
    assert len(again) == 1 and again[0].fields == {"run_id": run_id}
    pending = await r.xpending_range(stream, keys.RUNNERS_GROUP, "-", "+", 1000)
    assert {p["message_id"] for p in pending} >= {again[0].id}
    assert entry.id not in {p["message_id"] for p in pending}
    assert newest.id not in {p["message_id"] for p in pending}
    await queue.ack(stream, again[0].id)


async def test_requeue_puts_runs_back_with_their_marker_and_acks_every_entry(r: Redis) -> None:
    """Entries read after SIGTERM go back: a fresh entry and marker per run; an
    entry that names no run is acked and not queued again (no runner can run it)."""
    queue = Queue(r, pool="interactive", consumer="c-requeue")
    await queue.ensure_group()
    run_id = new_run_id()
    stream = keys.run_queue("interactive", run_id)
    junk = f"junk-{uuid.uuid4().hex}"
    await r.xadd(stream, {"run_id": run_id})
    await r.xadd(stream, {"not_a_run": junk})
    read = await queue.read(r, count=1000, block_ms=10)
    ours = [e for e in read if e.run_id == run_id or e.fields.get("not_a_run") == junk]
    assert len(ours) == 2
    await queue.requeue(ours)
    pending = await r.xpending_range(stream, keys.RUNNERS_GROUP, "-", "+", 1000)
    assert not {e.id for e in ours} & {p["message_id"] for p in pending}
    again = await queue.read(r, count=1000, block_ms=10)
    back = [e for e in again if e.run_id == run_id]
    assert [e.fields for e in back] == [{"run_id": run_id}]
    assert not [e for e in again if e.fields.get("not_a_run") == junk]
    assert await r.get(keys.enqueued(run_id)) == "1"
    await queue.ack(stream, *(e.id for e in back))


async def test_autoclaim_reports_delivery_counts(r: Redis) -> None:
    queue = Queue(r, pool="interactive", consumer="rescuer")
    await queue.ensure_group()
    run_id = new_run_id()
    stream = keys.run_queue("interactive", run_id)
    eid = str(await r.xadd(stream, {"run_id": run_id}))
    await r.xreadgroup(keys.RUNNERS_GROUP, "dead-runner", {stream: ">"}, count=1000)
    await r.xclaim(stream, keys.RUNNERS_GROUP, "dead-runner", 0, [eid], idle=60_000,
                   retrycount=3)  # fmt: skip
    found: list[Entry] = []
    for _ in range(50):
        got = await queue.autoclaim(min_idle_ms=30_000, count=100)
        found += [e for e in got if e.run_id == run_id]
        if found:
            break
    assert [(e.id, e.deliveries, e.stream) for e in found] == [(eid, 4, stream)]
    await queue.ack(stream, eid)


async def test_a_read_never_takes_more_than_it_asks_for_and_rotates_over_partitions(
    r: Redis,
) -> None:
    """Several partitions with work: a read of 2 takes 2; no partition waits more
    than one turn, so a hot one's backlog does not hold the others back."""
    queue = Queue(r, pool="background", consumer=f"fair-{uuid.uuid4().hex[:6]}")
    await queue.ensure_group()
    await drain(queue, r)
    hot = [new_run_id(0) for _ in range(30)]
    cold = [new_run_id(p) for p in (5, 11, 17)]
    for run_id in hot + cold:
        await run_protocol.enqueue(redis=r, run_id=run_id, pool="background")
    taken: list[str] = []
    for _ in range(4):
        got = await queue.read(r, count=2, block_ms=10)
        assert len(got) == 2
        taken += [e.run_id or "" for e in got]
        for e in got:
            await queue.ack(e.stream, e.id)
    assert set(cold) <= set(taken)  # within 8 claims, despite 30 hot entries first
    await drain(queue, r)


async def test_an_idle_read_wakes_on_the_doorbell_at_once(r: Redis) -> None:
    queue = Queue(r, pool="background", consumer=f"bell-{uuid.uuid4().hex[:6]}")
    await queue.ensure_group()
    await drain(queue, r)
    blocking = create_redis(r_url(r), timeout_s=12)
    try:
        reading = asyncio.create_task(queue.read(blocking, count=1, block_ms=10_000))
        await asyncio.sleep(0.3)  # blocked on the doorbell by now
        run_id = new_run_id()
        started = time.monotonic()
        await run_protocol.enqueue(redis=r, run_id=run_id, pool="background")
        got = await asyncio.wait_for(reading, timeout=5)
        assert [e.run_id for e in got] == [run_id]
        assert time.monotonic() - started < 1.0  # not the 10 s block
        await queue.ack(got[0].stream, got[0].id)
    finally:
        await blocking.aclose()


def r_url(r: Redis) -> str:
    pool = getattr(r, "connection_pool", None)
    if pool is not None:
        kw = pool.connection_kwargs
    else:  # a cluster: its first node (the client finds the others)
        kw = r.get_default_node().connection_kwargs  # type: ignore[attr-defined]
    auth = f":{kw['password']}@" if kw.get("password") else ""
    return f"redis://{auth}{kw['host']}:{kw['port']}/0"


async def test_a_runner_refuses_queues_laid_out_for_another_count(r: Redis) -> None:
    queue = Queue(r, pool="background", consumer="layout")
    recorded = await r.get(keys.LAYOUT)
    await r.set(keys.LAYOUT, str(partitions.count() + 1))
    try:
        with pytest.raises(LayoutMismatch):
            await queue.ensure_group()
    finally:
        if recorded is None:
            await r.delete(keys.LAYOUT)
        else:
            await r.set(keys.LAYOUT, recorded)
