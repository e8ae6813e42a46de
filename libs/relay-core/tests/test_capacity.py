"""Pool admission on real Redis: never more admitted runs than live runner slots."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from relay_core import run_protocol
from relay_core.capacity import PoolCapacity
from relay_core.redis import create_redis


@pytest.fixture
async def rc(redis_url: str):
    redis = create_redis(redis_url)
    yield redis
    await redis.aclose()


@pytest.fixture
def pool(rc: Redis) -> PoolCapacity:
    return PoolCapacity(rc, f"test-{uuid.uuid4().hex[:8]}")


async def test_concurrent_admissions_never_exceed_capacity(pool: PoolCapacity) -> None:
    await pool.advertise("runner-a", 3, ttl_s=30)
    await pool.advertise("runner-b", 2, ttl_s=30)
    results = await asyncio.gather(
        *(pool.try_admit(uuid.uuid4().hex, max_run_s=60) for _ in range(20))
    )
    assert sum(results) == 5
    assert await pool.usage() == (5, 5)


async def test_release_frees_a_slot_for_a_waiter(pool: PoolCapacity, rc: Redis) -> None:
    await pool.advertise("runner-a", 1, ttl_s=30)
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    assert await pool.try_admit(first, max_run_s=60)
    waiter = asyncio.create_task(pool.admit(second, wait_s=5, max_run_s=60))
    await asyncio.sleep(0.1)
    assert not waiter.done(), "no slot: the second run waits"
    await run_protocol.release_slots(redis=rc, run_id=first, user_id=None, pool=pool.pool)
    assert await asyncio.wait_for(waiter, 5)


async def test_waiting_gives_up_at_the_deadline(pool: PoolCapacity) -> None:
    await pool.advertise("runner-a", 1, ttl_s=30)
    assert await pool.try_admit(uuid.uuid4().hex, max_run_s=60)
    assert not await pool.admit(uuid.uuid4().hex, wait_s=0.2, max_run_s=60)


async def test_dead_runner_capacity_lapses(pool: PoolCapacity) -> None:
    await pool.advertise("runner-dead", 4, ttl_s=0.001)
    await asyncio.sleep(0.01)
    assert not await pool.try_admit(uuid.uuid4().hex, max_run_s=60)
    assert await pool.usage() == (0, 0)


async def test_admission_is_idempotent_per_run(pool: PoolCapacity) -> None:
    await pool.advertise("runner-a", 1, ttl_s=30)
    run = uuid.uuid4().hex
    assert await pool.try_admit(run, max_run_s=60)
    assert await pool.try_admit(run, max_run_s=60), "a retried admission keeps its slot"
    assert await pool.usage() == (1, 1)
