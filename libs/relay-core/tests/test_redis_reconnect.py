"""Regression: the first commands after a Redis restart failed.

`create_redis` gave the asyncio client redis-py's SYNC `Retry`, whose
`call_with_retry` returns the coroutine without awaiting it: nothing was ever
retried, so every pooled connection opened before a Redis restart failed once
("Connection closed by server"). The chaos suite saw it as a gateway 503 on
a burst of submissions long after Redis had come back.

The fix (`redis.asyncio.retry.Retry`) also makes pubsub connections reconnect
and re-subscribe by themselves; `relay_core.auth.RevocationListener` now drops
its cache on every subscribe confirmation (tests/test_auth.py). Only
connection errors are retried: a hung Redis must still turn into an error
after one socket timeout, not two.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay_core.redis import create_redis
from relay_devstack.servers import RedisServer

pytestmark = pytest.mark.redis  # servers of their own, started in the tests


async def test_pooled_connections_survive_a_redis_restart(relay_tmp: Path) -> None:
    server = RedisServer(relay_tmp / "reconnect-redis", persist=True).start()
    redis = create_redis(server.url)
    try:
        await redis.set("k", "v")
        assert await asyncio.gather(*(redis.get("k") for _ in range(8))) == ["v"] * 8
        await asyncio.to_thread(server.restart)  # same port, same data
        assert await asyncio.gather(*(redis.get("k") for _ in range(8))) == ["v"] * 8
    finally:
        await redis.aclose()
        server.stop()


async def test_a_hung_redis_fails_after_one_timeout_not_a_retry(relay_tmp: Path) -> None:
    timeout_s = 1.0  # retrying would add a backoff and a reconnect that times out too: > 2 s
    server = RedisServer(relay_tmp / "hung-redis").start()
    redis = create_redis(server.url, timeout_s=timeout_s)
    try:
        await redis.set("k", "v")
        server.pause()
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await redis.get("k")
        assert time.monotonic() - started < 1.8 * timeout_s
        server.resume()
        assert await redis.get("k") == "v"  # and the pool is usable again
    finally:
        server.resume()
        await redis.aclose()
        server.stop()
