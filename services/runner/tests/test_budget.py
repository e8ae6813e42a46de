"""Cost ceilings are race-free across replicas: real Redis, concurrent reservers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from relay_core import keys
from relay_core.redis import create_redis
from relay_runner.budget import Budget, BudgetExceeded, utc_day


@pytest.fixture
async def budget(redis_url: str):
    redis = create_redis(redis_url)
    yield Budget(redis)
    await redis.aclose()


async def test_reserve_then_settle_refunds_the_difference(budget: Budget) -> None:
    run, user = uuid.uuid4().hex, uuid.uuid4().hex
    res = await budget.reserve(
        run_id=run, user_id=user, amount_usd=0.30, run_limit_usd=1.0, daily_limit_usd=5.0
    )
    assert await budget.spent_by_run(run) == pytest.approx(0.30)
    await budget.settle(res, 0.05)
    assert await budget.spent_by_run(run) == pytest.approx(0.05)
    assert await budget.spent_today(user) == pytest.approx(0.05)


async def test_run_ceiling_refuses_a_call_that_does_not_fit(budget: Budget) -> None:
    run, user = uuid.uuid4().hex, uuid.uuid4().hex
    kw = {"run_id": run, "user_id": user, "run_limit_usd": 1.0, "daily_limit_usd": 50.0}
    await budget.reserve(amount_usd=0.6, **kw)  # type: ignore[arg-type]
    with pytest.raises(BudgetExceeded) as exc:
        await budget.reserve(amount_usd=0.6, **kw)  # type: ignore[arg-type]
    assert exc.value.reason == "cost_budget_exceeded"
    assert await budget.spent_today(user) == pytest.approx(0.6), "a refusal reserves nothing"


async def test_concurrent_runs_never_pass_the_daily_ceiling(budget: Budget) -> None:
    user = uuid.uuid4().hex

    async def one_run() -> str:
        try:
            res = await budget.reserve(
                run_id=uuid.uuid4().hex,
                user_id=user,
                amount_usd=0.10,
                run_limit_usd=1.0,
                daily_limit_usd=1.0,
            )
        except BudgetExceeded as exc:
            return exc.reason
        await budget.settle(res, 0.10)
        return "ok"

    outcomes = await asyncio.gather(*(one_run() for _ in range(50)))
    assert outcomes.count("ok") == 10
    assert set(outcomes) == {"ok", "daily_budget_exceeded"}
    assert await budget.spent_today(user) == pytest.approx(1.0)


async def test_without_a_ledger_a_lost_counter_starts_from_zero(budget: Budget) -> None:
    user = uuid.uuid4().hex
    kw = {"user_id": user, "run_limit_usd": 1.0, "daily_limit_usd": 1.0}
    await budget.reserve(run_id=uuid.uuid4().hex, amount_usd=0.9, **kw)  # type: ignore[arg-type]
    await budget._redis.delete(keys.daily_cost(user, utc_day()))
    await budget.reserve(run_id=uuid.uuid4().hex, amount_usd=0.9, **kw)  # type: ignore[arg-type]
    assert await budget.spent_today(user) == pytest.approx(0.9)


async def test_a_settle_never_recreates_a_lost_counter_nor_goes_below_zero(
    budget: Budget,
) -> None:
    user = uuid.uuid4().hex
    kw = {"user_id": user, "run_limit_usd": 1.0, "daily_limit_usd": 5.0}
    lost = await budget.reserve(run_id=uuid.uuid4().hex, amount_usd=0.5, **kw)  # type: ignore[arg-type]
    await budget._redis.delete(lost.day_key, lost.run_key)
    await budget.settle(lost, 0.1)
    assert await budget._redis.exists(lost.day_key, lost.run_key) == 0
    await budget.reserve(run_id=uuid.uuid4().hex, amount_usd=0.2, **kw)  # type: ignore[arg-type]
    await budget._redis.delete(lost.run_key)
    await budget._redis.set(lost.run_key, 500_000)  # the lost run counter, back again
    await budget.settle(lost, 0.0)  # refunds 0.5 from a day counter holding 0.2
    assert await budget.spent_today(user) == 0.0
