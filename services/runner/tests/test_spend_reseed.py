"""A daily cost counter Redis lost is re-seeded from state's cost ledger.

Real Redis, Postgres and state: the user's spend is put in the ledger by
finishing runs through state, the Redis counter is deleted as a wipe would,
and the next reservation must see that spend again.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from runner_testkit import TOKEN, Stack

from relay_core import keys
from relay_core.models import ModelSpec
from relay_core.redis import create_redis
from relay_core.state_api import CreateRunIn, FinishIn
from relay_core.state_client import StateClient
from relay_devstack.procs import free_port
from relay_runner.budget import DAY_TTL_S, Budget, BudgetExceeded, LedgerUnavailable, utc_day
from relay_runner.spend import RunSpend, ledger_from


def _spec() -> ModelSpec:
    return ModelSpec(
        name="m",
        provider="anthropic",
        upstream_model="m",
        input_usd_per_mtok=1.0,
        output_usd_per_mtok=1.0,
    )


@pytest.fixture
async def budget(redis: Redis, state: StateClient) -> Budget:
    return Budget(redis, ledger=ledger_from(state))


async def spend_in_ledger(state: StateClient, budget: Budget, user: str, usd: float) -> None:
    """A run of `user` that reserves, settles to `usd` and finishes (its ledger row)."""
    run, _ = await state.create_run(CreateRunIn(user_id=user, message="hi", model="sim-default"))
    claim = await state.claim_run(run.run_id, consumer=f"test-{uuid.uuid4().hex[:6]}")
    res = await budget.reserve(
        run_id=run.run_id, user_id=user, amount_usd=usd, run_limit_usd=10, daily_limit_usd=100
    )
    await budget.settle(res, usd)
    await state.finish_run(
        run.run_id, FinishIn(attempt=claim.attempt, status="succeeded", cost_usd=usd)
    )


async def test_a_wiped_counter_is_reseeded_and_still_refuses(
    budget: Budget, redis: Redis, state: StateClient, user: str
) -> None:
    await spend_in_ledger(state, budget, user, 0.70)
    await spend_in_ledger(state, budget, user, 0.20)
    assert await budget.spent_today(user) == pytest.approx(0.90)
    assert (await state.daily_spend(user_id=user, day=utc_day())).cost_usd == pytest.approx(0.90)

    day_key = keys.daily_cost(user, utc_day())
    assert await redis.delete(day_key) == 1  # what a Redis restart without persistence does
    kw = {"user_id": user, "run_limit_usd": 1.0, "daily_limit_usd": 1.0}
    with pytest.raises(BudgetExceeded) as exc:
        await budget.reserve(run_id=uuid.uuid4().hex, amount_usd=0.15, **kw)  # type: ignore[arg-type]
    assert exc.value.reason == "daily_budget_exceeded"
    assert await budget.spent_today(user) == pytest.approx(0.90), "seeded from the ledger"
    assert 0 < await redis.ttl(day_key) <= DAY_TTL_S, "seeded with the counter's TTL"

    await budget.reserve(run_id=uuid.uuid4().hex, amount_usd=0.10, **kw)  # type: ignore[arg-type]
    assert await budget.spent_today(user) == pytest.approx(1.0)


async def test_concurrent_reservers_after_a_wipe_seed_once(
    redis: Redis, state: StateClient, stack: Stack, user: str
) -> None:
    await spend_in_ledger(state, Budget(redis), user, 0.50)
    await redis.delete(keys.daily_cost(user, utc_day()))
    # Four "replicas": each its own Redis and state clients and its own Budget.
    clients = [create_redis(stack.redis_url) for _ in range(4)]
    states = [StateClient(stack.state_url, TOKEN, timeout_s=5.0) for _ in range(4)]
    budgets = [Budget(c, ledger=ledger_from(s)) for c, s in zip(clients, states, strict=True)]

    async def one(i: int) -> str:
        try:
            await budgets[i % 4].reserve(
                run_id=uuid.uuid4().hex,
                user_id=user,
                amount_usd=0.05,
                run_limit_usd=1.0,
                daily_limit_usd=1.0,
            )
        except BudgetExceeded as exc:
            return exc.reason
        return "ok"

    try:
        outcomes = await asyncio.gather(*(one(i) for i in range(40)))
    finally:
        for c, s in zip(clients, states, strict=True):
            await c.aclose()
            await s.aclose()
    assert outcomes.count("ok") == 10, "(1.00 - 0.50) / 0.05: the ledger counted once"
    assert set(outcomes) == {"ok", "daily_budget_exceeded"}
    assert await Budget(redis).spent_today(user) == pytest.approx(1.0)


async def test_a_day_without_spend_seeds_zero(budget: Budget, user: str) -> None:
    res = await budget.reserve(
        run_id=uuid.uuid4().hex, user_id=user, amount_usd=0.25, run_limit_usd=1, daily_limit_usd=1
    )
    assert await budget.spent_today(user) == pytest.approx(0.25)
    await budget.settle(res, 0.05)
    assert await budget.spent_today(user) == pytest.approx(0.05)


async def test_a_settle_after_a_wipe_does_not_recreate_the_counter(
    budget: Budget, redis: Redis, state: StateClient, user: str
) -> None:
    await spend_in_ledger(state, budget, user, 0.40)
    res = await budget.reserve(
        run_id=uuid.uuid4().hex, user_id=user, amount_usd=0.30, run_limit_usd=1, daily_limit_usd=5
    )
    await redis.delete(res.day_key, res.run_key)
    await budget.settle(res, 0.10)  # an in-flight call finishing after the wipe
    assert await redis.exists(res.day_key, res.run_key) == 0, "left for the re-seed"
    await budget.reserve(
        run_id=uuid.uuid4().hex, user_id=user, amount_usd=0.01, run_limit_usd=1, daily_limit_usd=5
    )
    assert await budget.spent_today(user) == pytest.approx(0.41)


async def test_an_unreadable_ledger_lets_the_call_go_unreserved(redis: Redis, user: str) -> None:
    dead = StateClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout_s=1.0)
    budget = Budget(redis, ledger=ledger_from(dead))
    try:
        with pytest.raises(LedgerUnavailable):
            await budget.reserve(
                run_id="r", user_id=user, amount_usd=0.1, run_limit_usd=1, daily_limit_usd=1
            )
        spend = RunSpend(
            budget, run_id=uuid.uuid4().hex, user_id=user, run_limit_usd=1, daily_limit_usd=1
        )
        assert await spend.reserve(_spec(), max_tokens=10, prompt_chars=30) is None
    finally:
        await dead.aclose()
    assert await redis.exists(keys.daily_cost(user, utc_day())) == 0, "still missing: seeded later"


async def test_a_state_without_the_endpoint_seeds_zero(
    redis: Redis, stack: Stack, user: str
) -> None:
    # modelsim is a real HTTP server that answers 404 to the ledger path, as a
    # state that predates the endpoint does.
    old = StateClient(stack.modelsim_url, TOKEN, timeout_s=2.0)
    try:
        budget = Budget(redis, ledger=ledger_from(old))
        await budget.reserve(
            run_id=uuid.uuid4().hex,
            user_id=user,
            amount_usd=0.3,
            run_limit_usd=1,
            daily_limit_usd=1,
        )
    finally:
        await old.aclose()
    assert await budget.spent_today(user) == pytest.approx(0.3)
