"""The tests run on the Redis server the harness was asked for.

`make test` runs the Redis-facing tests twice: on the default server (the
venv's 6.2, or a 7+ on PATH) and with `RELAY_TEST_REDIS_SERVER=valkey` on a
Redis 7.2-compatible one (relay_devstack.servers). This makes sure the second
pass is not silently the first one again.
"""

from __future__ import annotations

import os
from typing import Any

from redis.asyncio import Redis

from relay_devstack.servers import REDIS_SERVER_ENV


async def test_the_session_redis_is_the_one_asked_for(redis_url: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        info: dict[str, Any] = await client.info("server")
    finally:
        await client.aclose()
    major = int(str(info["redis_version"]).split(".")[0])
    if os.environ.get(REDIS_SERVER_ENV, "").strip() == "valkey":
        assert "valkey_version" in info, info
        assert major >= 7  # Valkey reports the Redis version it is compatible with
    else:
        assert "valkey_version" not in info
        assert major >= 6
