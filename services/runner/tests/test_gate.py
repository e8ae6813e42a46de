"""The breaker gate exports each model's circuit state for dashboards and alerts."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from relay_core.models import ModelSpec
from relay_core.redis import create_redis
from relay_runner.breaker import BreakerPolicy, CircuitBreakers
from relay_runner.gate import BreakerGate


def state_of(spec: ModelSpec) -> float | None:
    return REGISTRY.get_sample_value(
        "relay_runner_breaker_state", {"provider": spec.provider, "model": spec.upstream_model}
    )


async def test_gauge_follows_open_and_close(redis_url: str) -> None:
    redis = create_redis(redis_url)
    try:
        policy = BreakerPolicy(min_calls=2, failure_rate=0.5, open_s=60)
        gate = BreakerGate(CircuitBreakers(redis, policy))
        name = f"m-{uuid.uuid4().hex[:8]}"
        spec = ModelSpec(
            name=name,
            provider="anthropic",
            upstream_model=name,
            input_usd_per_mtok=1.0,
            output_usd_per_mtok=1.0,
        )
        await gate.record(spec, ok=True)
        assert state_of(spec) == 0
        await gate.record(spec, ok=False)
        await gate.record(spec, ok=False)
        assert state_of(spec) == 2
        assert not await gate.allow(spec)
        assert state_of(spec) == 2
    finally:
        await redis.aclose()
