"""The runner's Redis operations against a real Redis: fence, hand-back, requeue, autoclaim.

(`done` is `relay_core.run_protocol.write_done`, tested in relay-core.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from runner_testkit import run_events

from relay_core import events, keys
from relay_core.redis import create_redis
from relay_runner.publish import FencedPublisher
from relay_runner.streams import Entry, EventWriter, Queue


@pytest.fixture
async def r(runner_redis: object) -> AsyncIterator[Redis]:
    client = create_redis(runner_redis.url)  # type: ignore[attr-defined]
    yield client
    await client.aclose()


def new_run_id() -> str:
    return f"run_{uuid.uuid4().hex}"


async def test_fenced_writes_are_dropped_once_the_lease_changes(r: Redis) -> None:
    run_id = new_run_id()
    await r.set(keys.lease(run_id), "runner-a:1", px=10_000)
    publisher = FencedPublisher(r, pool="interactive")
    writer = EventWriter(publisher, run_id=run_id, lease_value="runner-a:1", maxlen=1000)
    assert await writer.write(events.token("hello", 0)) is not None
    await r.set(keys.lease(run_id), "runner-b:2", px=10_000)  # a newer attempt took over
    assert await writer.write(events.token("late", 0)) is None
    assert writer.fenced
    await r.delete(keys.lease(run_id))  # and no lease at all is no licence either
    fresh = EventWriter(publisher, run_id=run_id, lease_value="runner-a:1", maxlen=1000)
    assert await fresh.write(events.token("later", 0)) is None
    assert [e.data["text"] for e in await run_events(r, run_id)] == ["hello"]


async def test_hand_back_releases_only_our_lease_and_requeues(r: Redis) -> None:
    queue = Queue(r, pool="interactive", consumer="c1")
    await queue.ensure_group()
    await queue.ensure_group()  # BUSYGROUP is fine
    run_id = new_run_id()
    await r.xadd(queue.name, {"run_id": run_id})
    entry = next(e for e in await queue.read(r, count=100, block_ms=10) if e.run_id == run_id)
    await r.set(keys.lease(run_id), "c1:1", px=10_000)
    await queue.hand_back(entry, lease_value="c9:9")  # not ours: kept
    assert await r.get(keys.lease(run_id)) == "c1:1"
    newest = next(e for e in await queue.read(r, count=100, block_ms=10) if e.run_id == run_id)
    await queue.hand_back(newest, lease_value="c1:1")
    assert await r.get(keys.lease(run_id)) is None
    assert await r.get(keys.enqueued(run_id)) == "1"
    again = [e for e in await queue.read(r, count=100, block_ms=10) if e.run_id == run_id]
    assert len(again) == 1 and again[0].fields == {"run_id": run_id}
    pending = await r.xpending_range(queue.name, keys.RUNNERS_GROUP, "-", "+", 1000)
    assert {p["message_id"] for p in pending} >= {again[0].id}
    assert entry.id not in {p["message_id"] for p in pending}
    assert newest.id not in {p["message_id"] for p in pending}
    await queue.ack(again[0].id)


async def test_requeue_puts_runs_back_with_their_marker_and_acks_every_entry(r: Redis) -> None:
    """Entries read after SIGTERM go back: a fresh entry and marker per run; an
    entry that names no run is acked and not queued again (no runner can run it)."""
    queue = Queue(r, pool="interactive", consumer="c-requeue")
    await queue.ensure_group()
    run_id = new_run_id()
    junk = f"junk-{uuid.uuid4().hex}"
    await r.xadd(queue.name, {"run_id": run_id})
    await r.xadd(queue.name, {"not_a_run": junk})
    read = await queue.read(r, count=1000, block_ms=10)
    ours = [e for e in read if e.run_id == run_id or e.fields.get("not_a_run") == junk]
    assert len(ours) == 2
    await queue.requeue(ours)
    pending = await r.xpending_range(queue.name, keys.RUNNERS_GROUP, "-", "+", 1000)
    assert not {e.id for e in ours} & {p["message_id"] for p in pending}
    again = await queue.read(r, count=1000, block_ms=10)
    back = [e for e in again if e.run_id == run_id]
    assert [e.fields for e in back] == [{"run_id": run_id}]
    assert not [e for e in again if e.fields.get("not_a_run") == junk]
    assert await r.get(keys.enqueued(run_id)) == "1"
    await queue.ack(*(e.id for e in back))


async def test_autoclaim_reports_delivery_counts(r: Redis) -> None:
    queue = Queue(r, pool="interactive", consumer="rescuer")
    await queue.ensure_group()
    run_id = new_run_id()
    eid = str(await r.xadd(queue.name, {"run_id": run_id}))
    await r.xreadgroup(keys.RUNNERS_GROUP, "dead-runner", {queue.name: ">"}, count=1000)
    await r.xclaim(queue.name, keys.RUNNERS_GROUP, "dead-runner", 0, [eid], idle=60_000,
                   retrycount=3)  # fmt: skip
    found: list[Entry] = []
    cursor = "0-0"
    for _ in range(50):
        cursor, got = await queue.autoclaim(min_idle_ms=30_000, count=100, start=cursor)
        found += [e for e in got if e.run_id == run_id]
        if found or cursor == "0-0":
            break
    assert [(e.id, e.deliveries) for e in found] == [(eid, 4)]
    await queue.ack(eid)
