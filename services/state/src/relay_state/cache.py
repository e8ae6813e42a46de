"""The Redis cache of conversation histories (`relay:conv:{id}:messages`).

Decisions:

- The cached value is JSON `{"user_id", "messages"}`, so ownership is checked
  on a hit without a database round trip.
- Invalidation writes a short-lived tombstone instead of deleting, and a fill
  is `SET NX`. Why: a reader that loaded the old history from Postgres just
  before a write committed would otherwise put it back right after the
  writer's DEL, and the stale transcript would stay for the whole TTL. With a
  tombstone in place the late fill fails; the tombstone outlives any reader
  (reads are bounded by the ~2 s dependency timeouts).
- Redis is a cache here: every failure or slow answer (over `CACHE_BUDGET_S`)
  is logged and treated as a miss, and the answer comes from Postgres. A
  failed invalidation leaves a stale entry for at most the TTL; it is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core import keys as redis_keys
from relay_core.rediscalls import RedisCalls
from relay_core.state_api import MessageOut

log = logging.getLogger(__name__)

TOMBSTONE = "-"
TOMBSTONE_TTL_S = 15
CACHE_BUDGET_S = 0.5


@dataclass(frozen=True)
class CachedHistory:
    user_id: str
    messages: list[MessageOut]


async def read(*, redis: Redis, conversation_id: str) -> CachedHistory | None:
    try:
        async with asyncio.timeout(CACHE_BUDGET_S):
            raw = await redis.get(redis_keys.conv_messages(conversation_id))
    except (RedisError, TimeoutError) as exc:
        log.warning("history cache read failed: %s", type(exc).__name__)
        return None
    if not raw or raw == TOMBSTONE:
        return None
    try:
        value: dict[str, Any] = json.loads(raw)
        messages = [MessageOut.model_validate(m) for m in value["messages"]]
        return CachedHistory(user_id=str(value["user_id"]), messages=messages)
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable history cache entry for %s; ignoring it", conversation_id)
        return None


async def fill(
    *,
    redis: Redis,
    conversation_id: str,
    user_id: str,
    messages: list[MessageOut],
    ttl_s: float,
) -> None:
    value = json.dumps(
        {"user_id": user_id, "messages": [m.model_dump(mode="json") for m in messages]},
        separators=(",", ":"),
    )
    try:
        key = redis_keys.conv_messages(conversation_id)
        async with asyncio.timeout(CACHE_BUDGET_S):
            await redis.set(key, value, ex=max(1, int(ttl_s)), nx=True)
    except (RedisError, TimeoutError) as exc:
        log.warning("history cache fill failed: %s", type(exc).__name__)


async def invalidate(
    *, redis: Redis, conversation_id: str, calls: RedisCalls | None = None
) -> None:
    """The tombstone over the conversation's cached history (with `calls`, in
    its next coalesced pipeline); a failure is logged, not raised."""
    key = redis_keys.conv_messages(conversation_id)
    try:
        async with asyncio.timeout(CACHE_BUDGET_S):
            if calls is None:
                await redis.set(key, TOMBSTONE, ex=TOMBSTONE_TTL_S)
            else:
                await calls.command("SET", key, TOMBSTONE, "EX", TOMBSTONE_TTL_S)
    except (RedisError, TimeoutError) as exc:
        log.warning(
            "history cache invalidation failed (stale for at most the TTL): %s",
            type(exc).__name__,
            extra={"conversation_id": conversation_id},
        )
