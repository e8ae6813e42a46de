"""The per-key rate limit (GCRA) against real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from relay_core import keys
from relay_core.errors import ApiError
from relay_core.ratelimit import check_rate
from relay_core.redis import create_redis
from relay_devstack.procs import free_port


async def test_over_the_limit_is_429_with_retry_after(redis: Any) -> None:
    key_id = f"k-{uuid.uuid4().hex[:8]}"
    for _ in range(3):  # a burst of the whole limit passes
        await check_rate(redis, key_id=key_id, limit_per_min=3)
    with pytest.raises(ApiError) as err:
        await check_rate(redis, key_id=key_id, limit_per_min=3)
    assert err.value.status == 429
    assert err.value.headers is not None
    # the next request passes one interval (60 s / 3) after the burst, not at a minute's end
    assert 1 <= int(err.value.headers["Retry-After"]) <= 20


async def refused(redis: Any, key_id: str, limit: int) -> ApiError | None:
    try:
        await check_rate(redis, key_id=key_id, limit_per_min=limit)
    except ApiError as exc:
        return exc
    return None


async def test_after_a_burst_one_request_passes_per_interval(redis: Any) -> None:
    """60/min: a burst of 60, then one request per second; a refused request is
    told to retry in 1 s, and one does pass soon after (a fixed one-minute
    window would refuse until the minute's end)."""
    key_id = f"k-{uuid.uuid4().hex[:8]}"
    results = [await refused(redis, key_id, 60) for _ in range(60)]
    assert results == [None] * 60
    first = await refused(redis, key_id, 60)
    assert first is not None and first.headers == {"Retry-After": "1"}
    deadline = time.monotonic() + 5
    while (await refused(redis, key_id, 60)) is not None:
        assert time.monotonic() < deadline, "no request passed within 5 s of the burst"
        await asyncio.sleep(0.05)
    # that request used the interval that had come: the next one is refused again
    assert await refused(redis, key_id, 60) is not None
    # the state is one key: the theoretical arrival time, in whole µs
    tat = await redis.get(keys.rate_limit(key_id))
    tat = tat.decode() if isinstance(tat, bytes) else tat
    assert tat.isdigit() and abs(int(tat) - time.time() * 1e6) < 61e6


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
