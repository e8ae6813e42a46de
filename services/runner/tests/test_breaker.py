"""The shared circuit breaker: opens on an error rate, fails fast, probes, closes.

Two `CircuitBreakers` objects on one real Redis stand for two runner replicas.
Time is passed in explicitly, so no test sleeps.
"""

from __future__ import annotations

import uuid

import pytest

from relay_core.redis import create_redis
from relay_runner.breaker import BreakerPolicy, CircuitBreakers

POLICY = BreakerPolicy(window_s=10, min_calls=4, failure_rate=0.5, open_s=5, probe_ttl_s=3)


@pytest.fixture
async def replicas(redis_url: str):
    a, b = create_redis(redis_url), create_redis(redis_url)
    yield CircuitBreakers(a, POLICY), CircuitBreakers(b, POLICY)
    await a.aclose()
    await b.aclose()


async def test_opens_on_error_rate_and_protects_other_replicas(replicas) -> None:
    one, two = replicas
    model, t = uuid.uuid4().hex, 1_000_000.0
    for _ in range(3):
        assert await one.record("anthropic", model, ok=False, now=t) == "closed"  # < min_calls
    assert await one.record("anthropic", model, ok=False, now=t) == "open"
    assert not await two.allow("anthropic", model, now=t + 1), "the other replica fails fast"


async def test_below_the_rate_stays_closed(replicas) -> None:
    one, _ = replicas
    model, t = uuid.uuid4().hex, 2_000_000.0
    for ok in [True, True, True, False, True, True, False]:
        assert await one.record("anthropic", model, ok=ok, now=t) == "closed"
    assert await one.allow("anthropic", model, now=t)


async def test_half_open_admits_one_probe_then_closes_on_success(replicas) -> None:
    one, two = replicas
    model, t = uuid.uuid4().hex, 3_000_000.0
    for _ in range(4):
        await one.record("openai", model, ok=False, now=t)
    later = t + POLICY.open_s + 0.1
    assert await one.allow("openai", model, now=later), "one probe after open_s"
    assert not await two.allow("openai", model, now=later), "only one probe at a time"
    assert await one.state("openai", model) == "half_open"
    assert await one.record("openai", model, ok=True, now=later) == "closed"
    assert await two.allow("openai", model, now=later)


async def test_failed_probe_reopens(replicas) -> None:
    one, _ = replicas
    model, t = uuid.uuid4().hex, 4_000_000.0
    for _ in range(4):
        await one.record("openai", model, ok=False, now=t)
    later = t + POLICY.open_s + 0.1
    assert await one.allow("openai", model, now=later)
    assert await one.record("openai", model, ok=False, now=later) == "open"
    assert not await one.allow("openai", model, now=later + 1)


async def test_a_lost_probe_expires(replicas) -> None:
    one, two = replicas
    model, t = uuid.uuid4().hex, 5_000_000.0
    for _ in range(4):
        await one.record("openai", model, ok=False, now=t)
    later = t + POLICY.open_s + 0.1
    assert await one.allow("openai", model, now=later)  # this probe's runner dies
    assert await two.allow("openai", model, now=later + POLICY.probe_ttl_s + 0.1)
