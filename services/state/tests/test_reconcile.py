"""The reconciler puts back on the queue the runs Redis lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from redis.asyncio import Redis

from relay_core import keys as redis_keys
from relay_core.redis import stream_entries
from relay_core.state_api import CreateRunIn
from relay_core.state_client import StateClient
from relay_state.db import Database
from relay_state.reconcile import RECONCILE_LOCK_ID, reconcile_once

from .conftest import TOKEN, ServerThread, make_settings

NewRun = Callable[..., CreateRunIn]


async def _queue_entries(redis: Redis, run_id: str) -> list[str]:
    entries = stream_entries(await redis.xrange(redis_keys.run_queue("background", run_id)))
    return [entry_id for entry_id, fields in entries if fields.get("run_id") == run_id]


async def _lose(redis: Redis, run_id: str) -> None:
    """What a Redis that lost its data looks like for one run."""
    for entry_id in await _queue_entries(redis, run_id):
        await redis.xdel(redis_keys.run_queue("background", run_id), entry_id)
    await redis.delete(redis_keys.enqueued(run_id))


async def test_a_lost_queued_run_is_enqueued_again(
    client: StateClient, redis: Redis, db: Database, new_run: NewRun
) -> None:
    lost, _ = await client.create_run(new_run())
    kept, _ = await client.create_run(new_run())
    leased, _ = await client.create_run(new_run())
    await client.claim_run(leased.run_id, consumer="runner-a")
    finished, _ = await client.create_run(new_run())
    await client.cancel_run(finished.run_id, user_id="alice")
    for run in (lost, leased, finished):
        await _lose(redis, run.run_id)

    result, after = await reconcile_once(db=db, redis=redis, batch=100, min_age_s=0)
    assert result.locked
    assert result.examined == 3  # lost, kept, leased: the cancelled one is done
    assert result.reenqueued == [lost.run_id]
    assert kept.run_id not in result.reenqueued
    assert after == 0
    assert len(await _queue_entries(redis, lost.run_id)) == 1
    assert await redis.get(redis_keys.enqueued(lost.run_id)) == "1"
    assert await _queue_entries(redis, leased.run_id) == []

    again, _ = await reconcile_once(db=db, redis=redis, batch=100, min_age_s=0)
    assert again.reenqueued == []


async def test_young_runs_are_left_to_their_own_enqueue(
    client: StateClient, redis: Redis, db: Database, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run())
    await _lose(redis, run.run_id)
    result, _ = await reconcile_once(db=db, redis=redis, batch=100, min_age_s=60)
    assert result.examined == 0 and result.reenqueued == []


async def test_a_pass_is_bounded_and_resumes_where_it_stopped(
    client: StateClient, redis: Redis, db: Database, new_run: NewRun
) -> None:
    runs = [(await client.create_run(new_run()))[0] for _ in range(3)]
    for run in runs:
        await _lose(redis, run.run_id)
    first, after = await reconcile_once(db=db, redis=redis, batch=2, min_age_s=0)
    assert first.reenqueued == [runs[0].run_id, runs[1].run_id]
    assert after > 0
    second, after = await reconcile_once(db=db, redis=redis, batch=2, after_seq=after, min_age_s=0)
    assert second.reenqueued == [runs[2].run_id]
    assert after == 0


async def test_only_one_replica_reconciles_at_a_time(
    client: StateClient, redis: Redis, db: Database, database_url: str, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run())
    await _lose(redis, run.run_id)
    other = Database(database_url)
    try:
        async with other.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", RECONCILE_LOCK_ID)
            skipped, _ = await reconcile_once(db=db, redis=redis, batch=100, min_age_s=0)
        assert not skipped.locked and skipped.reenqueued == []
    finally:
        await other.close()
    done, _ = await reconcile_once(db=db, redis=redis, batch=100, min_age_s=0)
    assert done.reenqueued == [run.run_id]


async def test_the_background_loop_reconciles(
    database_url: str,
    redis_url: str,
    redis: Redis,
    start_state: Callable[..., ServerThread],
    new_run: NewRun,
) -> None:
    settings = make_settings(
        database_url, redis_url, reconcile_interval_s=0.1, reconcile_min_age_s=0.0
    )
    state = start_state(settings)
    client = StateClient(state.base_url, TOKEN)
    try:
        run, _ = await client.create_run(new_run())
    finally:
        await client.aclose()
    await _lose(redis, run.run_id)
    deadline = time.monotonic() + 10
    while not await _queue_entries(redis, run.run_id):
        assert time.monotonic() < deadline, "the reconciler never re-enqueued the run"
        await asyncio.sleep(0.05)
    assert await redis.get(redis_keys.enqueued(run.run_id)) == "1"
