"""Known bug, kept as a strict xfail: the first commands after a Redis restart fail.

`create_redis` gives the asyncio client redis-py's SYNC `Retry`, whose
`call_with_retry` returns the coroutine without awaiting it: nothing is ever
retried, so every pooled connection opened before a Redis restart fails once
("Connection closed by server"). The chaos suite saw it as a gateway 503 on
a burst of submissions long after Redis had come back.

The one-line fix (`from redis.asyncio.retry import Retry`) also makes pubsub
connections reconnect and re-subscribe by themselves, which the gateway's
`RevocationListener` (relay_core.auth) does not expect yet: it drops its
cache only when it sees the connection fail. Fix both together, then drop
the xfail marker (strict: this test fails as soon as the bug is gone).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from relay_core.redis import create_redis
from relay_devstack.servers import RedisServer


@pytest.mark.xfail(strict=True, reason="relay_core.redis uses the sync Retry (see docstring)")
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
