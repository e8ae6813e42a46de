"""The runs' small Redis calls, coalesced (`rediscalls`, issue 14), against a real Redis.

What must hold: calls waiting at the same moment share one pipeline and each
gets its own answer; a failing command fails only its caller; a script Redis
lost (SCRIPT FLUSH) is loaded again and its calls answered; the budget and the
breakers answer through it as they do alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from relay_core.redis import create_redis
from relay_core.rediscalls import RedisCalls
from relay_runner.breaker import CircuitBreakers
from relay_runner.budget import Budget

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
async def r(runner_redis: object) -> AsyncIterator[Redis]:
    client = create_redis(runner_redis.url)  # type: ignore[attr-defined]
    yield client
    await client.aclose()


@pytest.fixture
async def calls(r: Redis) -> AsyncIterator[RedisCalls]:
    c = RedisCalls(r)
    yield c
    await c.aclose()


async def test_calls_waiting_together_share_a_pipeline(r: Redis, calls: RedisCalls) -> None:
    script = r.register_script(INCR_BY)
    key = f"t:{uuid.uuid4().hex}"
    answers = await asyncio.gather(*(calls.script(script, [key], [1]) for _ in range(50)))
    assert sorted(answers) == list(range(1, 51))  # each call its own answer
    assert 1 <= calls.pipelines < 50  # the first alone, the rest together
    assert await calls.command("GET", key) == "50"


async def test_a_failing_command_fails_only_its_caller(r: Redis, calls: RedisCalls) -> None:
    text = f"t:{uuid.uuid4().hex}"
    await r.set(text, "not a number")
    good = f"t:{uuid.uuid4().hex}"
    answers: list[object] = await asyncio.gather(
        calls.command("INCR", text), calls.command("INCR", good), return_exceptions=True
    )
    bad_call, good_call = answers
    assert isinstance(bad_call, ResponseError)
    assert good_call == 1


async def test_a_script_redis_lost_is_loaded_again(r: Redis, calls: RedisCalls) -> None:
    script = r.register_script(INCR_BY)
    key = f"t:{uuid.uuid4().hex}"
    assert await calls.script(script, [key], [2]) == 2
    await r.script_flush()
    answers = await asyncio.gather(*(calls.script(script, [key], [3]) for _ in range(3)))
    assert sorted(answers) == [5, 8, 11]


async def test_budget_and_breakers_answer_through_it_as_alone(r: Redis, calls: RedisCalls) -> None:
    budget = Budget(r, calls=calls)
    run_id, user = f"run_{uuid.uuid4().hex}", f"u-{uuid.uuid4().hex[:8]}"
    reservations = await asyncio.gather(
        *(
            budget.reserve(
                run_id=run_id, user_id=user, amount_usd=0.1, run_limit_usd=1, daily_limit_usd=5
            )
            for _ in range(5)
        )
    )
    assert await budget.spent_by_run(run_id) == pytest.approx(0.5)
    await asyncio.gather(*(budget.settle(res, 0.05) for res in reservations))
    assert await budget.spent_by_run(run_id) == pytest.approx(0.25)

    breakers = CircuitBreakers(r, calls=calls)
    model = f"m-{uuid.uuid4().hex[:8]}"
    assert await breakers.allow("anthropic", model)
    states = await asyncio.gather(
        *(breakers.record("anthropic", model, ok=False) for _ in range(10))
    )
    assert "open" in states
    assert not await breakers.allow("anthropic", model)
