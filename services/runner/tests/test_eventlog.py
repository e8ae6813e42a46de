"""A run's event log as its runner writes it (`eventlog`), against a real Redis.

What must hold: writes are fenced by the lease; a write whose reply was lost
is never written twice; and when the store lost the attempt's last events (a
failover to a replica that had not received them), they are put back with
their own ids before the next write, so a client resuming with
`Last-Event-ID` sees no gap and no duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from runner_testkit import run_events

from relay_core import events, keys, run_protocol
from relay_core.redis import create_redis, stream_entries
from relay_runner.eventlog import RESTORE_WINDOW, EventsLost, EventWriter
from relay_runner.publish import FencedPublisher

LEASE = "runner-a:1"


@pytest.fixture
async def r(runner_redis: object) -> AsyncIterator[Redis]:
    client = create_redis(runner_redis.url)  # type: ignore[attr-defined]
    yield client
    await client.aclose()


async def writer_of(r: Redis) -> tuple[str, EventWriter]:
    run_id = f"run_{uuid.uuid4().hex}"
    await r.set(keys.lease(run_id), LEASE, px=60_000)
    publisher = FencedPublisher(r, pool="interactive")
    return run_id, EventWriter(publisher, run_id=run_id, lease_value=LEASE, maxlen=1000)


async def stored(r: Redis, run_id: str) -> list[tuple[str | None, str]]:
    return [(e.id, e.data.get("text", e.type)) for e in await run_events(r, run_id)]


async def lose_after(r: Redis, run_id: str, kept: str) -> None:
    """The stream as a promoted replica that had only received up to `kept` has it
    (XDEL would not do: a stream remembers the last id it generated)."""
    stream = keys.events(run_id)
    entries = stream_entries(await r.xrange(stream, max=kept))
    await r.delete(stream)
    for entry_id, fields in entries:
        await r.xadd(stream, dict[Any, Any](fields), id=entry_id)


async def test_fenced_writes_are_dropped_once_the_lease_changes(r: Redis) -> None:
    run_id, writer = await writer_of(r)
    assert await writer.write(events.token("hello", 0)) is not None
    await r.set(keys.lease(run_id), "runner-b:2", px=10_000)  # a newer attempt took over
    assert await writer.write(events.token("late", 0)) is None
    assert writer.fenced
    await r.delete(keys.lease(run_id))  # and no lease at all is no licence either
    fresh = EventWriter(
        FencedPublisher(r, pool="interactive"), run_id=run_id, lease_value=LEASE, maxlen=1000
    )
    assert await fresh.write(events.token("later", 0)) is None
    assert [text for _, text in await stored(r, run_id)] == ["hello"]


async def test_events_a_failover_lost_are_put_back_with_their_own_ids(r: Redis) -> None:
    run_id, writer = await writer_of(r)
    ids = [await writer.write(events.token(t, 0)) for t in ("a", "b", "c", "d")]
    seen = await stored(r, run_id)
    await lose_after(r, run_id, str(ids[1]))  # the replica never got c, d
    e = await writer.write(events.token("e", 0))
    after = await stored(r, run_id)
    assert after[:4] == seen  # c and d are back, under the ids a client may have seen
    assert after[4] == (e, "e")


async def test_a_stream_lost_entirely_is_put_back_too(r: Redis) -> None:
    run_id, writer = await writer_of(r)
    for t in ("a", "b"):
        await writer.write(events.token(t, 0))
    seen = await stored(r, run_id)
    await r.delete(keys.events(run_id))
    await writer.write(events.token("c", 0))
    assert [text for _, text in (await stored(r, run_id))] == ["a", "b", "c"]
    assert (await stored(r, run_id))[:2] == seen


async def test_a_write_that_landed_without_its_reply_is_not_written_twice(r: Redis) -> None:
    run_id, writer = await writer_of(r)
    await writer.write(events.token("a", 0))
    fields = events.encode_fields(events.token("b", 0))
    landed = str(await r.xadd(keys.events(run_id), dict[Any, Any](fields)))  # the lost reply
    assert await writer.write(events.token("b", 0)) == landed  # the retry
    assert [text for _, text in await stored(r, run_id)] == ["a", "b"]


async def test_a_stream_someone_else_wrote_to_cannot_be_vouched_for(r: Redis) -> None:
    run_id, writer = await writer_of(r)
    await writer.write(events.token("a", 0))
    await r.xadd(keys.events(run_id), {"event": "status", "data": "{}"})
    with pytest.raises(EventsLost):
        await writer.write(events.token("b", 0))


async def test_losses_older_than_the_window_hand_the_run_back(r: Redis) -> None:
    run_id, writer = await writer_of(r)
    ids = [await writer.write(events.token(str(i), 0)) for i in range(RESTORE_WINDOW + 5)]
    await r.delete(keys.events(run_id))
    assert ids[0] is not None
    with pytest.raises(EventsLost):
        await writer.write(events.token("next", 0))


async def test_done_puts_lost_events_back_first_and_is_written_once(r: Redis) -> None:
    run_id, writer = await writer_of(r)
    ids = [await writer.write(events.token(t, 0)) for t in ("a", "b")]
    await lose_after(r, run_id, str(ids[0]))
    await r.delete(keys.lease(run_id))  # finishing released the lease: `done` is unfenced

    def done(after_id: str | None) -> Any:
        return run_protocol.write_done(
            redis=r, run_id=run_id, user_id=None, pool="interactive", status="succeeded",
            cost_usd=0.0, retention_s=100, after_id=after_id,
        )  # fmt: skip

    await writer.write_done(done)
    await writer.write_done(done)  # a retry: the `done` at the tail is ours
    found = await run_events(r, run_id)
    assert [(e.id, e.type) for e in found][:2] == [(ids[0], "token"), (ids[1], "token")]
    assert [e.type for e in found] == ["token", "token", "done"]
