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


# Fairness (issue 17: one tenant's 12 long chats took every slot of the pool).


def _run() -> str:
    return uuid.uuid4().hex


async def test_a_tenant_holds_at_most_its_share(pool: PoolCapacity) -> None:
    await pool.advertise("runner-a", 8, ttl_s=30)
    hog = [await pool.try_admit(_run(), max_run_s=60, user_id="hog", share=0.5) for _ in range(6)]
    assert hog == [True] * 4 + [False] * 2, "half of 8 slots, with 4 still free"
    assert await pool.try_admit(_run(), max_run_s=60, user_id="other", share=0.5)
    assert await pool.usage() == (5, 8)
    # A larger share (the key's `interactive_share`) lets a tenant have more.
    assert await pool.try_admit(_run(), max_run_s=60, user_id="hog", share=1.0)


async def test_a_share_is_at_least_one_slot(pool: PoolCapacity) -> None:
    await pool.advertise("runner-a", 1, ttl_s=30)
    assert await pool.try_admit(_run(), max_run_s=60, user_id="alone", share=0.5)


async def test_waiting_tenants_are_admitted_in_turn_not_first_come(
    pool: PoolCapacity, rc: Redis
) -> None:
    """One slot; tenant A queues three runs, then B one. Freed slots go A, B, A:
    first come, first served would have given B's run the fourth slot."""
    await pool.advertise("runner-a", 1, ttl_s=30)
    holder = _run()
    assert await pool.try_admit(holder, max_run_s=60, user_id="x")
    a1, a2, a3, b1 = _run(), _run(), _run(), _run()

    async def poll(run: str, user: str) -> bool:  # what each waiting gateway does
        return await pool.try_admit(run, max_run_s=60, user_id=user, share=1.0, wait=True)

    for run in (a1, a2, a3):
        assert not await poll(run, "a")
    assert not await poll(b1, "b")

    async def free(run: str, user: str) -> None:
        await run_protocol.release_slots(redis=rc, run_id=run, user_id=user, pool=pool.pool)

    await free(holder, "x")
    # Whatever order the waiters poll in, the slot goes to the one whose turn it is.
    assert [await poll(r, u) for r, u in ((b1, "b"), (a3, "a"), (a2, "a"), (a1, "a"))] == [
        False,
        False,
        False,
        True,
    ]
    await free(a1, "a")
    assert [await poll(r, u) for r, u in ((a2, "a"), (a3, "a"), (b1, "b"))] == [False, False, True]
    await free(b1, "b")
    assert [await poll(r, u) for r, u in ((a3, "a"), (a2, "a"))] == [False, True]


async def test_a_waiter_that_stopped_polling_loses_its_turn(pool: PoolCapacity, rc: Redis) -> None:
    """A gateway gone while its request waited must not hold the line."""
    await pool.advertise("runner-a", 1, ttl_s=30)
    holder, gone, alive = _run(), _run(), _run()
    assert await pool.try_admit(holder, max_run_s=60, user_id="x")
    assert not await pool.try_admit(gone, max_run_s=60, user_id="a", wait=True)
    assert not await pool.try_admit(alive, max_run_s=60, user_id="b", wait=True)
    await run_protocol.release_slots(redis=rc, run_id=holder, user_id="x", pool=pool.pool)
    assert not await pool.try_admit(alive, max_run_s=60, user_id="b", wait=True), "a's turn"

    async def admitted() -> bool:
        return await pool.try_admit(alive, max_run_s=60, user_id="b", wait=True)

    deadline = asyncio.get_running_loop().time() + 5
    while not await admitted():
        assert asyncio.get_running_loop().time() < deadline, "the gone waiter kept its turn"
        await asyncio.sleep(0.1)


async def test_giving_up_leaves_the_queue(pool: PoolCapacity, rc: Redis) -> None:
    await pool.advertise("runner-a", 1, ttl_s=30)
    holder, quitter, next_ = _run(), _run(), _run()
    assert await pool.try_admit(holder, max_run_s=60, user_id="x")
    assert not await pool.admit(quitter, wait_s=0.2, max_run_s=60, user_id="a")
    assert not await pool.try_admit(next_, max_run_s=60, user_id="b", wait=True)
    await run_protocol.release_slots(redis=rc, run_id=holder, user_id="x", pool=pool.pool)
    assert await pool.try_admit(next_, max_run_s=60, user_id="b", wait=True)
