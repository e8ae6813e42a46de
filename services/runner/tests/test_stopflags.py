"""One poll of every run's cancel flag and the kill switch (`stopflags`), on its own Redis.

A Redis server of its own so `INFO commandstats` counts only these MGETs,
and so it can be stopped (the outage test) without disturbing other tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from runner_testkit import wait_for

from relay_core import keys
from relay_core.redis import create_redis
from relay_devstack.servers import RedisServer
from relay_runner.stopflags import StopFlags

INTERVAL_S = 0.05


@pytest.fixture(scope="module")
def own_redis(relay_tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(relay_tmp / f"stopflags-redis-{uuid.uuid4().hex[:6]}").start()
    yield server
    server.stop()


@pytest.fixture
async def r(own_redis: RedisServer) -> AsyncIterator[Redis]:
    client = create_redis(own_redis.url, timeout_s=0.5)
    yield client
    await client.aclose()


@pytest.fixture
async def flags(r: Redis) -> AsyncIterator[StopFlags]:
    watcher = StopFlags(r, interval_s=INTERVAL_S)
    yield watcher
    await watcher.aclose()


def new_run() -> str:
    return f"run_{uuid.uuid4().hex}"


async def mget_calls(r: Redis) -> int:
    stats = await r.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def test_one_mget_per_poll_for_every_run(r: Redis, flags: StopFlags) -> None:
    runs = [new_run() for _ in range(40)]
    before = await mget_calls(r)
    for run_id in runs:
        assert await flags.check(run_id) is None  # the first check of each asks Redis
    assert await mget_calls(r) - before - len(runs) in (flags.polls - 1, flags.polls)
    await r.set(keys.cancel(runs[7]), "1", ex=60)

    async def seen() -> bool:
        for run_id in runs:  # a hot loop of checks, as the runs' tokens make
            await flags.check(run_id)
        return await flags.check(runs[7]) == "cancelled"

    await wait_for(seen, timeout_s=2.0, what="the cancel to be seen")
    assert [await flags.check(run_id) for run_id in runs].count("cancelled") == 1
    assert flags.polls >= 1
    # Hundreds of checks, yet one MGET per poll beyond the first checks (the
    # poll in flight, if any, may reach Redis after INFO).
    assert await mget_calls(r) - before - len(runs) in (flags.polls - 1, flags.polls)


async def test_the_first_check_sees_the_kill_switch_at_once(r: Redis, flags: StopFlags) -> None:
    await r.set(keys.KILL_SWITCH, "1")
    try:
        assert await flags.check(new_run()) == "kill_switch"
    finally:
        await r.delete(keys.KILL_SWITCH)
    assert await flags.check(new_run()) is None


async def test_what_was_seen_is_kept_and_a_cancel_wins(r: Redis, flags: StopFlags) -> None:
    run_id = new_run()
    await r.set(keys.KILL_SWITCH, "true")
    try:
        assert await flags.check(run_id) == "kill_switch"
    finally:
        await r.delete(keys.KILL_SWITCH)
    await r.set(keys.cancel(run_id), "1", ex=60)

    async def cancelled() -> bool:
        return await flags.check(run_id) == "cancelled"

    await wait_for(cancelled, timeout_s=2.0, what="the cancel to win")
    await r.delete(keys.cancel(run_id))
    polls = flags.polls
    await wait_for(lambda: _after(flags, polls + 2), timeout_s=2.0, what="two more polls")
    assert await flags.check(run_id) == "cancelled"


async def test_the_poller_runs_only_while_runs_are_watched(flags: StopFlags) -> None:
    run_a, run_b = new_run(), new_run()
    await flags.check(run_a)
    await flags.check(run_b)
    assert flags.polling and flags.watched == 2
    flags.forget(run_a)
    flags.forget(run_b)
    flags.forget(run_b)  # twice is fine

    async def stopped() -> bool:
        return not flags.polling

    await wait_for(stopped, timeout_s=2.0, what="the poller to stop")
    polls = flags.polls
    await flags.check(run_a)  # watched again: polls again
    await wait_for(lambda: _after(flags, polls + 1), timeout_s=2.0, what="a new poll")


async def test_redis_down_keeps_what_was_seen_then_recovers(
    own_redis: RedisServer, r: Redis, flags: StopFlags
) -> None:
    cancelled, running = new_run(), new_run()
    await r.set(keys.cancel(cancelled), "1", ex=60)
    assert await flags.check(cancelled) == "cancelled"
    assert await flags.check(running) is None
    own_redis.stop()
    try:
        for _ in range(3):
            assert await flags.check(cancelled) == "cancelled"
            assert await flags.check(running) is None
        late = new_run()
        assert await flags.check(late) is None  # its first read failed: not stopped
    finally:
        own_redis.start()
    await r.set(keys.cancel(running), "1", ex=60)

    async def seen() -> bool:
        return await flags.check(running) == "cancelled"

    await wait_for(seen, timeout_s=5.0, what="the cancel after Redis came back")


async def _after(flags: StopFlags, polls: int) -> bool:
    return flags.polls >= polls
