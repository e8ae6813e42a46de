"""The fan-out engine against a real Redis: order, exactly once, resume, slow
subscribers, bounded connections, expiry and restarts."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from relay_core import events as ev
from relay_core import keys, partitions
from relay_core.events import Event
from relay_core.fanout import EventHub, HubUnavailable, SubscriberTooSlow, Subscription
from relay_core.redis import create_redis, is_cluster, stream_entries
from relay_devstack.procs import free_port
from relay_devstack.rediscluster import each_server
from relay_devstack.servers import RedisServer

DEADLINE_S = 10.0


@dataclass
class Run:
    status: str = "running"
    conversation_id: str = "conv_test"
    cost_usd: float = 0.0


RUNNING = Run()


def new_run_id() -> str:
    return f"run_{uuid.uuid4().hex}"


@pytest.fixture
async def rc(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[EventHub]:
    h = EventHub(redis_url, subscriber_buffer=1000)
    await h.start()
    yield h
    await h.stop()


def fields(event: Event) -> dict[Any, Any]:
    """The event's stream fields as redis-py's xadd takes them (its dict of unions
    is invariant: a dict[str, str] is refused)."""
    return ev.encode_fields(event)


async def xadd(rc: Redis, run_id: str, event: Event) -> str:
    return str(await rc.xadd(keys.events(run_id), fields(event)))


async def write_tokens(rc: Redis, run_id: str, n: int, *, done: bool = True) -> list[str]:
    ids = [await xadd(rc, run_id, ev.token(f"t{i} ", 0)) for i in range(n)]
    if done:
        ids.append(await xadd(rc, run_id, ev.done("succeeded", 0.01)))
    return ids


async def collect(sub: Subscription, timeout_s: float = DEADLINE_S) -> list[Event]:
    out: list[Event] = []
    async with asyncio.timeout(timeout_s):
        async for event in sub:
            out.append(event)
    return out


async def wait_for(check, timeout_s: float = DEADLINE_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_live_events_arrive_in_order_exactly_once(hub: EventHub, rc: Redis) -> None:
    run_id = new_run_id()
    sub = await hub.subscribe(run_id, run=RUNNING)
    reader = asyncio.create_task(collect(sub))
    ids = await write_tokens(rc, run_id, 200)
    got = await reader
    assert [e.id for e in got] == ids
    assert got[-1].type == "done"
    assert [e.data["text"] for e in got[:-1]] == [f"t{i} " for i in range(200)]


async def test_resume_from_a_middle_id_gets_exactly_the_rest(hub: EventHub, rc: Redis) -> None:
    run_id = new_run_id()
    ids = await write_tokens(rc, run_id, 20)
    sub = await hub.subscribe(run_id, after_id=ids[7], run=RUNNING)
    got = await collect(sub)
    assert [e.id for e in got] == ids[8:]


async def test_joining_while_events_are_written_has_no_gap_and_no_duplicate(
    hub: EventHub, rc: Redis
) -> None:
    """Subscribers join mid-run from assorted resume ids; each gets exactly the suffix."""
    run_id = new_run_id()
    written: list[str] = []
    first = await hub.subscribe(run_id, run=RUNNING)  # keeps the run live in the hub
    first_reader = asyncio.create_task(collect(first))

    async def writer() -> None:
        for i in range(400):
            written.append(await xadd(rc, run_id, ev.token(str(i), 0)))
            if i % 20 == 0:
                await asyncio.sleep(0.002)
        written.append(await xadd(rc, run_id, ev.done("succeeded", 0.0)))

    async def joiner(delay_s: float) -> tuple[str | None, list[Event]]:
        await asyncio.sleep(delay_s)
        after = random.choice(written[-30:]) if written else None
        sub = await hub.subscribe(run_id, after_id=after, run=RUNNING)
        return after, await collect(sub)

    w = asyncio.create_task(writer())
    joined = await asyncio.gather(*(joiner(i * 0.01) for i in range(30)))
    await w
    assert [e.id for e in await first_reader] == written
    for after, got in joined:
        start = 0 if after is None else written.index(after) + 1
        assert [e.id for e in got] == written[start:], f"resume after {after}"


async def test_many_subscribers_on_one_run_all_get_everything(hub: EventHub, rc: Redis) -> None:
    run_id = new_run_id()
    subs = [await hub.subscribe(run_id, run=RUNNING) for _ in range(100)]
    readers = [asyncio.create_task(collect(s)) for s in subs]
    ids = await write_tokens(rc, run_id, 50)
    for got in await asyncio.gather(*readers):
        assert [e.id for e in got] == ids
    assert hub.stats().subscribers == 0


async def test_joining_a_finished_run_replays_it_and_ends_with_done(
    hub: EventHub, rc: Redis
) -> None:
    run_id = new_run_id()
    ids = await write_tokens(rc, run_id, 1200)  # more than one replay page
    got = await collect(await hub.subscribe(run_id, run=Run(status="succeeded")))
    assert [e.id for e in got] == ids
    assert got[-1].type == "done"
    assert hub.stats().live_runs == 0  # a finished run is never followed


async def test_resuming_after_done_ends_at_once(hub: EventHub, rc: Redis) -> None:
    run_id = new_run_id()
    ids = await write_tokens(rc, run_id, 3)
    assert await collect(await hub.subscribe(run_id, after_id=ids[-1], run=RUNNING)) == []


async def test_a_run_not_started_yet_streams_once_it_starts(hub: EventHub, rc: Redis) -> None:
    run_id = new_run_id()
    sub = await hub.subscribe(run_id, run=Run(status="queued"))
    reader = asyncio.create_task(collect(sub))
    await asyncio.sleep(0.05)
    ids = await write_tokens(rc, run_id, 5)
    assert [e.id for e in await reader] == ids


async def test_expired_finished_run_gets_resync_then_done(hub: EventHub) -> None:
    run = Run(status="succeeded", conversation_id="conv_x", cost_usd=0.25)
    got = await collect(await hub.subscribe(new_run_id(), after_id="1-0", run=run))
    assert [e.type for e in got] == ["resync", "done"]
    assert got[0].data == {
        "reason": "events_expired",
        "transcript_url": "/v1/conversations/conv_x/messages",
    }
    assert got[1].data == {"status": "succeeded", "cost_usd": 0.25}


async def test_a_stream_expiring_before_its_replay_gets_resync_then_done(
    hub: EventHub, rc: Redis
) -> None:
    """The stream is there when the subscription opens and gone before it is
    read (retention ran out in between): never an empty stream without `done`."""
    run = Run(status="succeeded", conversation_id="conv_x", cost_usd=0.25)
    run_id = new_run_id()
    await write_tokens(rc, run_id, 3)
    sub = await hub.subscribe(run_id, run=run)
    assert await rc.delete(keys.events(run_id)) == 1
    got = await collect(sub)
    assert [e.type for e in got] == ["resync", "done"]
    assert got[0].data["reason"] == "events_expired"
    assert got[1].data == {"status": "succeeded", "cost_usd": 0.25}


async def test_a_stream_expiring_mid_replay_gets_resync_then_done(
    redis_url: str, rc: Redis
) -> None:
    hub = EventHub(redis_url, subscriber_buffer=1000, replay_page=2)
    await hub.start()
    try:
        run_id = new_run_id()
        ids = await write_tokens(rc, run_id, 10)
        sub = await hub.subscribe(run_id, run=Run(status="succeeded"))
        first = await sub.__anext__()  # the first page of two is read
        assert await rc.delete(keys.events(run_id)) == 1
        rest = await collect(sub)
        assert first.id == ids[0]
        assert [e.id for e in rest[:1]] == ids[1:2]
        assert [e.type for e in rest[1:]] == ["resync", "done"]
    finally:
        await hub.stop()


async def test_resuming_after_the_last_stored_event_of_a_finished_run_ends_quietly(
    hub: EventHub, rc: Redis
) -> None:
    """Nothing after the client's id was stored: no resync, even once it expires."""
    run_id = new_run_id()
    ids = await write_tokens(rc, run_id, 3)
    sub = await hub.subscribe(run_id, after_id=ids[-1], run=Run(status="succeeded"))
    await rc.delete(keys.events(run_id))
    assert await collect(sub) == []


async def test_resume_from_a_trimmed_id_gets_resync_then_what_is_kept(
    hub: EventHub, rc: Redis
) -> None:
    run_id = new_run_id()
    ids = await write_tokens(rc, run_id, 10)
    await rc.xtrim(keys.events(run_id), maxlen=5, approximate=False)
    got = await collect(await hub.subscribe(run_id, after_id=ids[1], run=RUNNING))
    assert got[0].type == "resync" and got[0].data["reason"] == "events_trimmed"
    assert [e.id for e in got[1:]] == ids[-5:]


async def test_resume_into_a_recreated_stream_gets_resync(hub: EventHub, rc: Redis) -> None:
    """Redis lost the stream and the run wrote a new one (it resumed from its
    checkpoint): the client's id is from the old one, so events may be lost.
    (On Redis 7 this is the case `max-deleted-entry-id` alone does not see.)"""
    run_id = new_run_id()
    key = keys.events(run_id)

    async def write(ids: list[str], last: Event) -> None:
        for i, sid in enumerate(ids):
            event = last if i == len(ids) - 1 else ev.token(f"t{i} ", 0)
            await rc.xadd(key, fields(event), id=sid)

    await write(["1000-0", "1000-1", "1000-2"], ev.token("t", 0))
    await rc.delete(key)
    await write(["9000-0", "9000-1"], ev.done("succeeded", 0.01))  # seconds later
    got = await collect(await hub.subscribe(run_id, after_id="1000-2", run=RUNNING))
    assert [e.type for e in got] == ["resync", "token", "done"]
    assert got[0].data["reason"] == "events_trimmed"
    assert [e.id for e in got[1:]] == ["9000-0", "9000-1"]


async def test_malformed_resume_id_is_refused(hub: EventHub) -> None:
    for bad in ("abc", "12-x", "-1", "1-2-3"):
        with pytest.raises(ValueError):
            await hub.subscribe(new_run_id(), after_id=bad, run=RUNNING)
    assert hub.stats().subscribers == 0


async def test_stalled_subscriber_is_dropped_and_does_not_slow_a_fast_one(
    redis_url: str, rc: Redis
) -> None:
    # A buffer below the default read size (500): the hub reads at most what a
    # subscriber may hold, so the fast one is never dropped by the size of one
    # read, whatever the writer's pace (it was, 5 times in 6, before).
    hub = EventHub(redis_url, subscriber_buffer=100)
    await hub.start()
    try:
        run_id = new_run_id()
        stalled = await hub.subscribe(run_id, run=RUNNING)  # never read until the end
        fast = await hub.subscribe(run_id, run=RUNNING)
        reader = asyncio.create_task(collect(fast))
        started = time.monotonic()
        ids = []
        for chunk in range(20):  # 2000 events in pipelined bursts, far past the buffer
            async with rc.pipeline(transaction=False) as pipe:
                for i in range(100):
                    pipe.xadd(keys.events(run_id), fields(ev.token(f"{chunk}.{i}", 0)))
                ids += [str(x) for x in await pipe.execute()]
        ids.append(await xadd(rc, run_id, ev.done("succeeded", 0.0)))
        got = await reader
        elapsed = time.monotonic() - started
        assert [e.id for e in got] == ids
        assert elapsed < 5.0, f"fast subscriber took {elapsed:.2f}s"
        assert stalled.dropped
        with pytest.raises(SubscriberTooSlow):
            await stalled.__anext__()
        assert hub.stats().dropped == 1
        assert hub.stats().subscribers == 0
    finally:
        await hub.stop()


async def _client_count(rc: Redis, name: str) -> int:
    """Connections named `name`, on every server (every node of a cluster)."""
    total = 0
    async for server in each_server(rc):
        total += sum(1 for c in await server.client_list() if c.get("name") == name)
    return total


async def test_500_subscribers_over_100_runs_use_at_most_16_connections(
    redis_url: str, rc: Redis
) -> None:
    """16 on a plain Redis; on a cluster, 15 per node's pool plus a reader per
    partition (a blocking read cannot span slots)."""
    hub = EventHub(redis_url, max_connections=16)
    await hub.start()
    try:
        run_ids = [new_run_id() for _ in range(100)]
        for run_id in run_ids[:50]:  # half of them have a history to replay
            await write_tokens(rc, run_id, 3, done=False)
        subs = await asyncio.gather(
            *(hub.subscribe(run_ids[i % 100], run=RUNNING) for i in range(500))
        )
        readers = [asyncio.create_task(collect(s)) for s in subs]
        async with rc.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.xadd(keys.events(run_id), fields(ev.token("x", 1)))
                pipe.xadd(keys.events(run_id), fields(ev.done("succeeded", 0.0)))
            await pipe.execute()
        results = await asyncio.gather(*readers)
        for i, got in enumerate(results):
            expected = 5 if i % 100 < 50 else 2
            assert len(got) == expected and got[-1].type == "done"
        used = await _client_count(rc, hub.client_name)
        primaries = len(rc.get_primaries()) if is_cluster(rc) else 0  # type: ignore[attr-defined]
        bound = 15 * primaries + partitions.count() if primaries else 16
        assert 1 <= used <= bound, used
        assert hub.stats().redis_connections <= bound
    finally:
        await hub.stop()
    deadline = time.monotonic() + DEADLINE_S  # Redis notices the closes asynchronously
    while await _client_count(rc, hub.client_name) != 0:
        assert time.monotonic() < deadline, "the hub left connections open"
        await asyncio.sleep(0.02)


async def test_a_new_run_wakes_the_reader_without_waiting_for_its_block(
    redis_url: str, rc: Redis
) -> None:
    hub = EventHub(redis_url, block_s=30.0)
    await hub.start()
    try:
        busy = new_run_id()
        await hub.subscribe(busy, run=RUNNING)
        reader = hub._reader(hub._batch_of(busy))
        await wait_for(lambda: reader.inflight_gen == reader.gen, what="reader blocked")
        # a run the same reader must take in (on a cluster: the same partition)
        run_id = next(r for r in iter(new_run_id, "") if hub._batch_of(r) == reader.batch)
        sub = await hub.subscribe(run_id, run=RUNNING)
        event_id = await xadd(rc, run_id, ev.status("hello"))
        started = time.monotonic()
        first = await asyncio.wait_for(sub.__anext__(), timeout=5.0)
        assert first.id == event_id
        assert time.monotonic() - started < 1.0
    finally:
        await hub.stop()


async def test_close_detaches_at_once(hub: EventHub) -> None:
    run_id = new_run_id()
    sub = await hub.subscribe(run_id, run=RUNNING)
    pending = asyncio.create_task(sub.__anext__())
    await asyncio.sleep(0.01)
    assert hub.stats().subscribers == 1 and hub.stats().live_runs == 1
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, timeout=1.0)
    assert hub.stats().subscribers == 0 and hub.stats().live_runs == 0


async def test_subscribe_with_redis_down_fails_fast_and_start_does_not(tmp_path: Path) -> None:
    hub = EventHub(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    await hub.start()  # must not raise: the service starts without Redis
    try:
        assert not await hub.ping()
        with pytest.raises(HubUnavailable):
            await asyncio.wait_for(hub.subscribe(new_run_id(), run=RUNNING), timeout=5.0)
        assert hub.stats().subscribers == 0
    finally:
        await hub.stop()


@pytest.mark.redis  # a server of its own
async def test_reader_recovers_after_a_redis_restart(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persist=True).start()
    hub = EventHub(server.url, block_s=1.0, timeout_s=0.5)
    await hub.start()
    rc = Redis.from_url(server.url, decode_responses=True)
    try:
        run_id = new_run_id()
        sub = await hub.subscribe(run_id, run=RUNNING)
        before = await write_tokens(rc, run_id, 3, done=False)
        assert [(await sub.__anext__()).id for _ in before] == before
        await rc.aclose()
        server.stop()  # AOF on: the stream survives
        await wait_for(lambda: not hub.stats().reader_connected, what="reader to notice")
        server.start()
        rc = Redis.from_url(server.url, decode_responses=True)
        after = await write_tokens(rc, run_id, 3)
        got = await collect(sub)
        assert [e.id for e in got] == after
        assert hub.stats().reader_connected
    finally:
        await hub.stop()
        await rc.aclose()
        server.stop()


async def test_a_fresh_run_gets_what_was_written_before_and_after_it_joined(
    hub: EventHub, rc: Redis
) -> None:
    """`fresh` (a run the caller created a moment ago, issue 14: no XINFO STREAM):
    the live feed starts at the stream's beginning, so events a runner wrote
    before the subscription and after it arrive once each, in order."""
    run_id = new_run_id()
    early = [await xadd(rc, run_id, ev.start(run_id, 1)), await xadd(rc, run_id, ev.token("a", 0))]
    sub = await hub.subscribe(run_id, run=Run(status="queued"), fresh=True)
    reader = asyncio.create_task(collect(sub))
    late = await write_tokens(rc, run_id, 5)
    got = await reader
    assert [e.id for e in got] == early + late
    assert got[1].raw == '{"text":"a","step":0}'  # the stored data, sent as it is


async def test_a_fresh_run_finished_before_it_joined_is_replayed_to_done(
    hub: EventHub, rc: Redis
) -> None:
    run_id = new_run_id()
    ids = await write_tokens(rc, run_id, 3)
    got = await collect(await hub.subscribe(run_id, run=RUNNING, fresh=True))
    assert [e.id for e in got] == ids and got[-1].type == "done"


async def test_events_a_failover_lost_reach_a_subscriber_who_comes_back_before_they_do(
    hub: EventHub, rc: Redis
) -> None:
    """Regression (the cluster failover test): a stream that lost its newest
    events (a promoted replica that had not received them) while the hub's
    cursor was past them; a client resuming then replayed nothing and got only
    what came after the cursor, so the events the runner put back (with their
    own ids) never reached it: a gap. Now the cursor goes back to where the
    stream ends, and the live feed delivers them once they are back."""
    run_id = new_run_id()
    stream = keys.events(run_id)
    watching = await hub.subscribe(run_id, run=RUNNING)
    ids = await write_tokens(rc, run_id, 4, done=False)
    seen = [(await watching.__anext__()).id for _ in ids]
    assert seen == ids
    lost = stream_entries(await rc.xrange(stream, min=ids[2]))  # the replica had only two
    await rc.delete(stream)
    for i, entry_id in enumerate(ids[:2]):
        await rc.xadd(stream, dict[Any, Any](ev.encode_fields(ev.token(f"t{i} ", 0))), id=entry_id)
    back = await hub.subscribe(run_id, after_id=ids[2], run=RUNNING)  # it had seen 3
    receiving = asyncio.create_task(collect(back))
    await wait_for(lambda: back._waiter is not None, what="its replay done, waiting live")
    for entry_id, fields in lost:  # the runner puts them back, then goes on
        await rc.xadd(stream, dict[Any, Any](fields), id=entry_id)
    after = await xadd(rc, run_id, ev.done("succeeded", 0.0))
    assert [e.id for e in await receiving] == [ids[3], after]
    assert [e.id for e in await collect(watching)] == [after]  # no duplicate


async def test_events_lost_between_a_subscribers_look_and_its_replay_reach_it(
    hub: EventHub, rc: Redis
) -> None:
    """Regression (the cluster failover test, in CI): a client resumed while the
    primary failed. Its look at the stream (on the old primary) found the live
    cursor; its replay (retried on the promoted replica, before the runner put
    the lost events back) ended short of that cursor; the live feed went on
    from the cursor, so the events between never reached it: 2 tokens of 157
    missing. Now a replay that ends short of its cursor sends the run's live
    feed back to where the replay ended."""
    run_id = new_run_id()
    stream = keys.events(run_id)
    watching = await hub.subscribe(run_id, run=RUNNING)
    ids = await write_tokens(rc, run_id, 5, done=False)
    assert [(await watching.__anext__()).id for _ in ids] == ids  # the cursor is at ids[4]
    back = await hub.subscribe(run_id, after_id=ids[0], run=RUNNING)  # looked: all there
    lost = stream_entries(await rc.xrange(stream, min=ids[2]))  # then the failover
    await rc.delete(stream)
    for i, entry_id in enumerate(ids[:2]):
        await rc.xadd(stream, dict[Any, Any](ev.encode_fields(ev.token(f"t{i} ", 0))), id=entry_id)
    receiving = asyncio.create_task(collect(back))
    await wait_for(lambda: back._waiter is not None, what="its replay done, waiting live")
    for entry_id, fields in lost:  # the runner puts them back, then goes on
        await rc.xadd(stream, dict[Any, Any](fields), id=entry_id)
    after = await xadd(rc, run_id, ev.done("succeeded", 0.0))
    assert [e.id for e in await receiving] == [*ids[1:], after]
    assert [e.id for e in await collect(watching)] == [after]  # no duplicate
