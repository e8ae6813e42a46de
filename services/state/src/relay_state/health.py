"""Readiness: is every dependency reachable right now?"""

from __future__ import annotations

from redis.asyncio import Redis

from relay_core.errors import ApiError
from relay_core.redis import ping
from relay_state.db import Database


async def check_ready(*, db: Database, redis: Redis) -> None:
    """Return when Postgres and Redis answer; else ApiError(503) naming the first down."""
    try:
        await db.ping()
    except ApiError as exc:
        raise ApiError(
            503, "postgres: " + exc.message.removeprefix("postgres unavailable: ")
        ) from exc
    if not await ping(redis):
        raise ApiError(503, "redis: not reachable")
