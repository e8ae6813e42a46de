"""The per-key fixed-window rate limit against real Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from relay_core.errors import ApiError
from relay_core.redis import create_redis
from relay_devstack.procs import free_port
from relay_gateway.ratelimit import check_rate


async def test_over_the_limit_is_429_with_retry_after(redis: Any) -> None:
    key_id = f"k-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        await check_rate(redis, key_id=key_id, limit_per_min=3)
    with pytest.raises(ApiError) as err:
        await check_rate(redis, key_id=key_id, limit_per_min=3)
    assert err.value.status == 429
    assert err.value.headers is not None
    assert 1 <= int(err.value.headers["Retry-After"]) <= 60


async def test_keys_are_counted_apart(redis: Any) -> None:
    first, second = (f"k-{uuid.uuid4().hex[:8]}" for _ in range(2))
    await check_rate(redis, key_id=first, limit_per_min=1)
    await check_rate(redis, key_id=second, limit_per_min=1)  # not refused
    with pytest.raises(ApiError):
        await check_rate(redis, key_id=first, limit_per_min=1)


async def test_fails_open_when_redis_is_down() -> None:
    dead = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    try:
        for _ in range(3):
            await check_rate(dead, key_id="k", limit_per_min=1)
    finally:
        await dead.aclose()


async def test_an_idempotent_retry_is_rate_limited_too(gateway: Any, new_user: Any) -> None:
    """Documented choice (`ratelimit`): the limit runs before the body is read,
    so a retry under an Idempotency-Key counts and is refused like any request."""
    alice = await new_user(rate_limit_per_min=2)
    headers = {**alice.auth, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = await gateway.post("/v1/runs", json={"message": "once"}, headers=headers)
    again = await gateway.post("/v1/runs", json={"message": "once"}, headers=headers)
    assert first.status_code == again.status_code == 202
    limited = await gateway.post("/v1/runs", json={"message": "once"}, headers=headers)
    assert limited.status_code == 429
    assert limited.json()["error"]["reason"] == "rate_limit"
