"""A run's Redis protocol (`relay_core.run_protocol`) on a real Redis.

What state, the runner and the gateway rely on: the queue entry and its
marker go together, a lease is taken by one claimer only, renewed and
released only by its holder and never recreated, and `done` ends a run's
Redis side (event, TTL, marker in one script on the run's partition, then
its slots). "In one MULTI" is checked with MONITOR: the commands that touch
the run, as Redis received them (on a cluster, the node of the run's slot),
between one MULTI and its EXEC.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from relay_core import events, keys, run_protocol
from relay_core.redis import create_redis, is_cluster, stream_entries
from relay_core.rediscalls import RedisCalls

POOL = "background"


@pytest.fixture
async def rc(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


def new_run_id() -> str:
    return f"run_{uuid.uuid4().hex}"


async def node_client(redis_url: str, key: str) -> Redis:
    """A plain client of the server that holds `key` (MONITOR is per node on a cluster)."""
    probe = create_redis(redis_url)
    try:
        if not is_cluster(probe):
            return probe
        await probe.initialize()
        node = probe.get_node_from_key(key)  # type: ignore[attr-defined]
    finally:
        if is_cluster(probe):
            await probe.aclose()
    return Redis(
        host=node.host,
        port=node.port,
        password=node.connection_kwargs.get("password"),
        decode_responses=True,
    )


async def monitored(
    redis_url: str, run_id: str, action: Callable[[], Awaitable[object]]
) -> list[dict[str, Any]]:
    """What MONITOR saw on the node of `run_id`'s keys during `action`."""
    monitor_client = await node_client(redis_url, keys.enqueued(run_id))
    sentinel = f"end-{uuid.uuid4().hex}"
    seen: list[dict[str, Any]] = []
    try:
        async with monitor_client.monitor() as monitor:  # on once entered (its OK read)
            await action()
            await monitor_client.echo(sentinel)
            while True:
                command = await asyncio.wait_for(monitor.next_command(), timeout=10)
                if sentinel in command["command"]:
                    break
                seen.append(command)
    finally:
        await monitor_client.aclose()
    return seen


async def commands_of(
    redis_url: str, run_id: str, action: Callable[[], Awaitable[object]]
) -> list[str]:
    """The commands of the connection that wrote `run_id`'s keys during `action`,
    from the first MULTI before them to the last EXEC (or all of them, if none)."""
    seen = await monitored(redis_url, run_id, action)
    ports = {c["client_port"] for c in seen if run_id in c["command"]}
    mine = [c["command"] for c in seen if c["client_port"] in ports]
    first = next(i for i, c in enumerate(mine) if run_id in c)
    start = max((i for i, c in enumerate(mine[:first]) if c == "MULTI"), default=first)
    end = max((i for i, c in enumerate(mine) if c == "EXEC"), default=len(mine) - 1)
    return [c.split(" ")[0] for c in mine[start : end + 1]]


# the lease value


def test_a_lease_value_names_its_consumer_and_attempt() -> None:
    value = run_protocol.lease_value("pod:7", 3)
    assert value == "pod:7:3"
    assert run_protocol.lease_holder(value) == "pod:7"


# the queue entry


async def assert_queued(rc: Redis, run_id: str, traceparent: str | None = None) -> None:
    entries = stream_entries(await rc.xrevrange(keys.run_queue(POOL, run_id), count=1000))
    expected = {"run_id": run_id} | ({"traceparent": traceparent} if traceparent else {})
    assert expected in [fields for _, fields in entries]
    assert await rc.get(keys.enqueued(run_id)) == "1"
    ttl = await rc.ttl(keys.enqueued(run_id))
    assert run_protocol.ENQUEUED_MARKER_TTL_S - 60 < ttl <= run_protocol.ENQUEUED_MARKER_TTL_S


async def test_enqueue_writes_the_entry_and_its_marker_in_one_script(
    rc: Redis, redis_url: str
) -> None:
    run_id = new_run_id()
    seen = await monitored(
        redis_url, run_id, lambda: run_protocol.enqueue(redis=rc, run_id=run_id, pool=POOL)
    )
    writes = [
        (c["client_type"], c["command"].split(" ")[0])
        for c in seen
        if run_id in c["command"] and not c["command"].startswith("EVALSHA")
    ]
    assert sorted(writes) == [("lua", "SET"), ("lua", "XADD")]  # both inside the one script
    await assert_queued(rc, run_id)


async def test_enqueues_at_the_same_moment_share_pipelines(rc: Redis) -> None:
    """State creating 20 runs at once: their entries, markers and doorbells in a
    few coalesced pipelines (not 40 round trips), each run queued as alone."""
    calls = RedisCalls(rc)
    bell = keys.queue_bell(POOL)
    rings_before = await rc.xlen(bell)
    run_ids = [new_run_id() for _ in range(20)]
    traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    try:
        await asyncio.gather(
            *(
                run_protocol.enqueue(
                    redis=rc, run_id=run_id, pool=POOL, traceparent=traceparent, calls=calls
                )
                for run_id in run_ids
            )
        )
        assert 1 <= calls.pipelines <= 3
    finally:
        await calls.aclose()
    for run_id in run_ids:
        await assert_queued(rc, run_id, traceparent)
    assert await rc.xlen(bell) >= min(rings_before + 20, run_protocol.BELL_MAXLEN)


async def test_missing_from_queue_is_what_has_neither_marker_nor_lease(rc: Redis) -> None:
    queued, leased, lost = new_run_id(), new_run_id(), new_run_id()
    await run_protocol.enqueue(redis=rc, run_id=queued, pool=POOL)
    await run_protocol.set_lease(redis=rc, run_id=leased, consumer="c", attempt=1, ttl_s=30)
    found = await run_protocol.missing_from_queue(redis=rc, run_ids=[queued, leased, lost])
    assert found == [lost]
    assert await run_protocol.missing_from_queue(redis=rc, run_ids=[]) == []


# the lease


async def test_one_claimer_takes_a_free_lease_the_others_see_its_holder(rc: Redis) -> None:
    run_id = new_run_id()
    takes = await asyncio.gather(
        *(
            run_protocol.take_lease(redis=rc, run_id=run_id, consumer=f"c{i}", attempt=1, ttl_s=30)
            for i in range(20)
        )
    )
    winners = [current for taken, current in takes if taken]
    assert len(winners) == 1
    assert {current for _, current in takes} == set(winners)
    assert await rc.get(keys.lease(run_id)) == winners[0]
    assert 25_000 < await rc.pttl(keys.lease(run_id)) <= 30_000


async def test_release_deletes_only_the_exact_lease(rc: Redis) -> None:
    run_id = new_run_id()
    await run_protocol.set_lease(redis=rc, run_id=run_id, consumer="new", attempt=2, ttl_s=30)
    old = run_protocol.lease_value("old", 1)
    assert not await run_protocol.release_lease(redis=rc, run_id=run_id, value=old)
    assert await rc.get(keys.lease(run_id)) == "new:2"  # a newer attempt's lease is kept
    mine = run_protocol.lease_value("new", 2)
    assert await run_protocol.release_lease(redis=rc, run_id=run_id, value=mine)
    assert await rc.exists(keys.lease(run_id)) == 0


async def test_a_finished_attempt_drops_the_marker_and_only_its_own_lease(rc: Redis) -> None:
    run_id = new_run_id()
    await run_protocol.enqueue(redis=rc, run_id=run_id, pool=POOL)
    await run_protocol.set_lease(redis=rc, run_id=run_id, consumer="c", attempt=12, ttl_s=30)
    await run_protocol.release_finished(redis=rc, run_id=run_id, attempt=2)
    assert await rc.exists(keys.enqueued(run_id)) == 0
    assert await rc.get(keys.lease(run_id)) == "c:12"  # attempt 12 is not attempt 2
    await run_protocol.release_finished(redis=rc, run_id=run_id, attempt=12)
    assert await rc.exists(keys.lease(run_id)) == 0


async def _renew(rc: Redis, run_id: str, value: str, entry_id: str, consumer: str) -> int:
    lease_keys, args = run_protocol.renew_lease_call(
        run_id=run_id, pool=POOL, value=value, ttl_s=30, consumer=consumer, entry_id=entry_id
    )
    return int(await rc.eval(run_protocol.RENEW_LEASE, len(lease_keys), *lease_keys, *args))


async def ensure_group(rc: Redis, queue: str) -> None:
    try:
        await rc.xgroup_create(queue, keys.RUNNERS_GROUP, id="0", mkstream=True)
    except Exception as exc:  # made by an earlier test
        assert "BUSYGROUP" in str(exc)


async def test_renewal_extends_our_lease_and_refreshes_our_queue_entry(rc: Redis) -> None:
    run_id = new_run_id()
    queue = keys.run_queue(POOL, run_id)
    await ensure_group(rc, queue)
    entry_id = str(await rc.xadd(queue, {"run_id": run_id}))
    await rc.xclaim(queue, keys.RUNNERS_GROUP, "holder", 0, [entry_id], idle=60_000,
                    retrycount=1, force=True)  # fmt: skip
    await run_protocol.set_lease(redis=rc, run_id=run_id, consumer="holder", attempt=1, ttl_s=1)
    assert await _renew(rc, run_id, "holder:1", entry_id, "holder") == 1
    assert 25_000 < await rc.pttl(keys.lease(run_id)) <= 30_000
    (pending,) = await rc.xpending_range(queue, keys.RUNNERS_GROUP, entry_id, entry_id, 1)
    assert int(pending["time_since_delivered"]) < 10_000  # no longer idle: not an orphan
    assert pending["times_delivered"] == 1  # JUSTID: not a delivery
    await rc.xack(queue, keys.RUNNERS_GROUP, entry_id)


async def test_renewal_never_takes_over_nor_recreates_a_lease(rc: Redis) -> None:
    taken = new_run_id()
    vanished = next(r for r in (new_run_id() for _ in range(10_000)) if same_partition(r, taken))
    queue = keys.run_queue(POOL, taken)
    await ensure_group(rc, queue)
    entry_id = str(await rc.xadd(queue, {"run_id": taken}))
    await rc.xclaim(queue, keys.RUNNERS_GROUP, "successor", 0, [entry_id], force=True)
    await run_protocol.set_lease(redis=rc, run_id=taken, consumer="successor", attempt=2, ttl_s=5)
    assert await _renew(rc, taken, "paused:1", entry_id, "paused") == 0
    assert await rc.get(keys.lease(taken)) == "successor:2"
    (pending,) = await rc.xpending_range(queue, keys.RUNNERS_GROUP, entry_id, entry_id, 1)
    assert pending["consumer"] == "successor"  # the entry was not pulled back
    assert await _renew(rc, vanished, "paused:1", entry_id, "paused") == 0
    assert await rc.exists(keys.lease(vanished)) == 0
    await rc.xack(queue, keys.RUNNERS_GROUP, entry_id)


def same_partition(a: str, b: str) -> bool:
    return keys.run_queue(POOL, a) == keys.run_queue(POOL, b)


# the cancel flag


async def test_the_cancel_flag_lives_as_long_as_the_marker(rc: Redis) -> None:
    run_id = new_run_id()
    await run_protocol.flag_cancel(redis=rc, run_id=run_id)
    assert await rc.get(keys.cancel(run_id)) == "1"
    assert run_protocol.CANCEL_FLAG_TTL_S - 60 < await rc.ttl(keys.cancel(run_id))


# the slots


async def _hold_slots(rc: Redis, user: str, run_id: str, pool: str) -> None:
    await rc.sadd(keys.user_active_runs(user), run_id, "run_other")
    await rc.zadd(keys.pool_admitted(pool), {run_id: 1e15, "run_other": 1e15})


async def test_release_slots_gives_back_the_user_slot_and_the_pool_admission(rc: Redis) -> None:
    user, pool = f"u-{uuid.uuid4().hex}", f"p-{uuid.uuid4().hex}"
    run_id = new_run_id()
    await _hold_slots(rc, user, run_id, pool)
    await run_protocol.release_slots(redis=rc, run_id=run_id, user_id=user)
    assert await rc.smembers(keys.user_active_runs(user)) == {"run_other"}
    assert await rc.zscore(keys.pool_admitted(pool), run_id) is not None  # no pool named
    await run_protocol.release_slots(redis=rc, run_id=run_id, user_id=None, pool=pool)
    assert await rc.zrange(keys.pool_admitted(pool), 0, -1) == ["run_other"]


async def test_leaked_user_slots_go_back_and_are_counted(rc: Redis) -> None:
    user = f"u-{uuid.uuid4().hex}"
    await rc.sadd(keys.user_active_runs(user), "run_a", "run_b", "run_c")
    assert await run_protocol.release_user_slots(redis=rc, user_id=user, run_ids=[]) == 0
    gone = await run_protocol.release_user_slots(
        redis=rc, user_id=user, run_ids=["run_a", "run_b", "run_never"]
    )
    assert gone == 2
    assert await rc.smembers(keys.user_active_runs(user)) == {"run_c"}


# done


async def test_done_ends_the_runs_redis_side_then_gives_its_slots_back(
    rc: Redis, redis_url: str
) -> None:
    user, pool = f"u-{uuid.uuid4().hex}", "interactive"
    run_id = new_run_id()
    await run_protocol.enqueue(redis=rc, run_id=run_id, pool=pool)
    await _hold_slots(rc, user, run_id, pool)

    async def done() -> None:
        await run_protocol.write_done(
            redis=rc,
            run_id=run_id,
            user_id=user,
            pool=pool,
            status="succeeded",
            cost_usd=0.5,
            retention_s=100,
            maxlen=1000,
        )

    sent = await commands_of(redis_url, run_id, done)
    # The run's part is one script on its partition (MONITOR shows what it ran);
    # the slots (two other tags) go back after it, never before; the second
    # ZREM: the run out of its tenant's share of the pool (relay_core.capacity).
    assert sent[:4] == ["EVAL", "XADD", "EXPIRE", "DEL"]
    if not is_cluster(rc):
        assert sent == ["EVAL", "XADD", "EXPIRE", "DEL", "SREM", "ZREM", "ZREM"]
    entries = stream_entries(await rc.xrange(keys.events(run_id)))
    found = [events.decode_entry(eid, f) for eid, f in entries]
    assert [(e.type, e.data) for e in found] == [("done", {"status": "succeeded", "cost_usd": 0.5})]
    assert 0 < await rc.ttl(keys.events(run_id)) <= 100
    assert await rc.smembers(keys.user_active_runs(user)) == {"run_other"}
    assert await rc.zscore(keys.pool_admitted(pool), run_id) is None
    assert await rc.zscore(keys.pool_admitted(pool), "run_other") is not None
    assert await rc.exists(keys.enqueued(run_id)) == 0
    await rc.zrem(keys.pool_admitted(pool), "run_other")


async def test_runs_ending_at_the_same_moment_share_pipelines(rc: Redis) -> None:
    """A runner finishing 20 runs at once: their `done` scripts, then their slots,
    in a few coalesced pipelines (not 40 round trips), each as alone; a run whose
    stream moved gets its tail back and keeps its slots."""
    calls = RedisCalls(rc)
    user, pool = f"u-{uuid.uuid4().hex}", f"p-{uuid.uuid4().hex}"
    run_ids = [new_run_id() for _ in range(20)]
    for run_id in run_ids:
        await _hold_slots(rc, user, run_id, pool)
    moved = run_ids[0]
    await rc.xadd(keys.events(moved), {"event": "token", "data": '{"text":"a"}'})

    def done(run_id: str) -> Any:
        return run_protocol.write_done(
            redis=rc, run_id=run_id, user_id=user, pool=pool, status="succeeded",
            cost_usd=0.0, retention_s=100, after_id="1-0" if run_id == moved else None,
            calls=calls,
        )  # fmt: skip

    try:
        results = await asyncio.gather(*(done(run_id) for run_id in run_ids))
        assert 2 <= calls.pipelines <= 5
    finally:
        await calls.aclose()
    assert isinstance(results[0], run_protocol.StreamTail)
    assert all(isinstance(r, str) for r in results[1:])
    assert await rc.smembers(keys.user_active_runs(user)) == {"run_other", moved}
    assert await rc.zrange(keys.pool_admitted(pool), 0, -1) == sorted(["run_other", moved])
    for run_id, entry_id in zip(run_ids[1:], results[1:], strict=True):
        entries = stream_entries(await rc.xrange(keys.events(run_id)))
        assert [(eid, f["event"]) for eid, f in entries] == [(entry_id, "done")]
    await rc.zrem(keys.pool_admitted(pool), "run_other", moved)


async def test_done_without_a_user_or_a_cap_still_frees_the_pool_admission(rc: Redis) -> None:
    run_id = new_run_id()
    pool = f"p-{uuid.uuid4().hex}"
    await rc.zadd(keys.pool_admitted(pool), {run_id: 1e15})
    await run_protocol.write_done(
        redis=rc,
        run_id=run_id,
        user_id=None,
        pool=pool,
        status="cancelled",
        cost_usd=0.0,
        retention_s=0.2,  # rounds up to the shortest TTL Redis has, 1 s
    )
    assert await rc.zcard(keys.pool_admitted(pool)) == 0
    assert await rc.xlen(keys.events(run_id)) == 1
    assert 0 < await rc.ttl(keys.events(run_id)) <= 1


async def test_done_after_an_id_writes_only_if_the_stream_still_ends_there(rc: Redis) -> None:
    """A writer that knows its last event (the runner) sees a stream that lost
    events (a failover), or its own `done` that landed, instead of writing."""
    run_id = new_run_id()
    stream = keys.events(run_id)
    first = str(await rc.xadd(stream, {"event": "status", "data": "{}"}))
    second = str(await rc.xadd(stream, {"event": "token", "data": '{"text":"a"}'}))
    await rc.delete(stream)  # a promoted replica that had only received the first
    await rc.xadd(stream, {"event": "status", "data": "{}"}, id=first)

    def done(after_id: str) -> Any:
        return run_protocol.write_done(
            redis=rc, run_id=run_id, user_id=None, pool=POOL, status="succeeded",
            cost_usd=0.0, retention_s=100, after_id=after_id,
        )  # fmt: skip

    tail = await done(second)
    assert tail == run_protocol.StreamTail(first, "status", "{}")
    assert await rc.xlen(stream) == 1  # nothing written
    done_id = await done(first)
    assert isinstance(done_id, str)
    again = await done(first)  # a retry whose first try landed: the tail is that `done`
    assert isinstance(again, run_protocol.StreamTail) and again.last_id == done_id
    assert again.event == "done"
    missing = await run_protocol.write_done(
        redis=rc, run_id=new_run_id(), user_id=None, pool=POOL, status="failed",
        cost_usd=0.0, retention_s=100, after_id=first,
    )  # fmt: skip
    assert missing == run_protocol.StreamTail(None, "", "")
