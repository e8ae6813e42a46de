"""The batched, fenced event writes (`publish`) against a real Redis.

What must hold: writes waiting at the same moment share one script call;
every event is still its own entry, in its run's order; the fence is checked
per event (a stale run's events are dropped, its neighbours' in the same
call are not); a failing XADD fails only its own write; what a run writes up
to its first token never waits for a batch.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from runner_testkit import run_events

from relay_core import events, keys, partitions
from relay_core.redis import create_redis
from relay_core.run_protocol import StreamTail
from relay_runner.eventlog import EventWriter
from relay_runner.publish import FencedPublisher

LEASE = "runner-a:1"


@pytest.fixture
async def r(runner_redis: object) -> AsyncIterator[Redis]:
    client = create_redis(runner_redis.url)  # type: ignore[attr-defined]
    yield client
    await client.aclose()


async def leased_run(r: Redis, value: str = LEASE, *, partition: int = 0) -> str:
    """A run of `partition` (writes share a call only within one on a cluster)."""
    run_id = next(
        run_id
        for run_id in (f"run_{uuid.uuid4().hex}" for _ in range(100_000))
        if partitions.of(run_id) == partition
    )
    await r.set(keys.lease(run_id), value, px=60_000)
    return run_id


async def put(pub: FencedPublisher, run_id: str, text: str, *, urgent: bool = False) -> str | None:
    fields = events.encode_fields(events.token(text, 0))
    written = await pub.write(
        keys.events(run_id),
        keys.lease(run_id),
        lease_value=LEASE,
        maxlen=1000,
        event_type=fields["event"],
        data=fields["data"],
        partition=partitions.of(run_id),
        urgent=urgent,
    )
    assert not isinstance(written, StreamTail)  # no `expected` id: never a tail
    return written


async def texts(r: Redis, run_id: str) -> list[str]:
    return [e.data["text"] for e in await run_events(r, run_id)]


async def test_concurrent_runs_share_calls_and_keep_their_order(r: Redis) -> None:
    pub = FencedPublisher(r, pool="interactive")
    runs = [await leased_run(r) for _ in range(20)]

    async def stream(run_id: str) -> list[str | None]:
        return [await put(pub, run_id, f"{run_id[-4:]}-{i}") for i in range(15)]

    ids = await asyncio.gather(*[stream(run_id) for run_id in runs])
    assert pub.writes == 20 * 15
    assert pub.calls < pub.writes / 3  # 20 runs writing at once: batches, not one call each
    for run_id, got in zip(runs, ids, strict=True):
        assert await texts(r, run_id) == [f"{run_id[-4:]}-{i}" for i in range(15)]
        assert got == [e.id for e in await run_events(r, run_id)]  # each caller got its id


async def test_the_fence_is_checked_per_event_inside_a_batch(r: Redis) -> None:
    pub = FencedPublisher(r, pool="interactive", linger_s=0.05)  # one batch for sure
    ours, stolen = await leased_run(r), await leased_run(r, "runner-b:2")
    got = await asyncio.gather(put(pub, ours, "kept"), put(pub, stolen, "late"))
    assert pub.calls == 1
    assert got[0] is not None and got[1] is None
    assert await texts(r, ours) == ["kept"]
    assert await r.exists(keys.events(stolen)) == 0


async def test_a_failing_xadd_fails_only_its_own_write(r: Redis) -> None:
    pub = FencedPublisher(r, pool="interactive", linger_s=0.05)
    good, broken = await leased_run(r), await leased_run(r)
    await r.set(keys.events(broken), "not a stream")
    got = await asyncio.gather(
        put(pub, good, "fine"), put(pub, broken, "boom"), return_exceptions=True
    )
    assert pub.calls == 1
    assert isinstance(got[1], ResponseError) and "WRONGTYPE" in str(got[1])
    assert isinstance(got[0], str) and await texts(r, good) == ["fine"]


async def test_urgent_writes_do_not_wait_for_a_batch(r: Redis) -> None:
    pub = FencedPublisher(r, pool="interactive", linger_s=2.0)
    run_id = await leased_run(r)
    lingering = asyncio.create_task(put(pub, run_id, "later"))
    await asyncio.wait_for(put(pub, run_id, "now", urgent=True), timeout=1.0)
    assert not lingering.done()  # still waiting for its batch
    assert await texts(r, run_id) == ["now"]
    assert await lingering is not None
    assert await texts(r, run_id) == ["now", "later"]


async def test_a_run_writes_urgently_until_its_first_token(r: Redis) -> None:
    """The start event and the first token are on the time-to-first-token path."""
    pub = FencedPublisher(r, pool="interactive", linger_s=2.0)
    run_id = await leased_run(r)
    writer = EventWriter(pub, run_id=run_id, lease_value=LEASE, maxlen=1000)
    await asyncio.wait_for(writer.write(events.start(run_id, 1)), timeout=1.0)
    await asyncio.wait_for(writer.write(events.status("thinking")), timeout=1.0)
    await asyncio.wait_for(writer.write(events.token("first", 0)), timeout=1.0)
    second = asyncio.create_task(writer.write(events.token("second", 0)))
    await asyncio.sleep(0.3)  # long enough for an urgent write, far below the linger
    assert not second.done()
    assert await second is not None
    found = await run_events(r, run_id)
    assert [e.type for e in found] == ["start", "status", "token", "token"]


async def test_a_cancelled_write_is_not_sent_and_close_fails_the_rest(r: Redis) -> None:
    pub = FencedPublisher(r, pool="interactive", linger_s=0.2)
    dropped, kept, closing = await leased_run(r), await leased_run(r), await leased_run(r)
    cancelled = asyncio.create_task(put(pub, dropped, "never"))
    await asyncio.sleep(0)  # queued
    cancelled.cancel()
    assert await put(pub, kept, "sent") is not None  # the same batch went out
    assert await r.exists(keys.events(dropped)) == 0
    waiting = asyncio.create_task(put(pub, closing, "too late"))
    await asyncio.sleep(0)
    await pub.aclose()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(waiting, timeout=1.0)
    assert await r.exists(keys.events(closing)) == 0


async def test_writes_of_several_partitions_share_one_round_trip(r: Redis) -> None:
    """One script call for every run on a plain Redis; on a cluster, where a script
    must stay in one slot, one pipeline of a script per partition."""
    pub = FencedPublisher(r, pool="interactive", linger_s=0.05)
    runs = [await leased_run(r, partition=p) for p in (0, 1, 2, 0)]
    got = await asyncio.gather(*(put(pub, run_id, "x") for run_id in runs))
    assert all(isinstance(g, str) for g in got)
    assert pub.calls == 1
    for run_id in runs:
        assert await texts(r, run_id) == ["x"]
