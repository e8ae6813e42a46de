"""Per-API-key request rate limit: a fixed one-minute window counter in Redis.

Why a fixed window: one INCR and EXPIRE in a MULTI per request,
shared by every gateway replica, with an exact `Retry-After` (the seconds
left in the window). Its known weakness, up to twice the limit across a window
boundary, is acceptable for a guardrail whose job is to stop floods.

Why it fails open: when Redis cannot be reached the request goes through
(with a warning in the log), because refusing every read of a run while Redis
blips would turn a guardrail into an outage; submitting a run still needs
Redis (the kill switch and the queue) and answers 503 then.
"""

from __future__ import annotations

import logging
import math
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core import keys
from relay_core.errors import ApiError

log = logging.getLogger(__name__)

WINDOW_S = 60


async def check_rate(redis: Redis, *, key_id: str, limit_per_min: int) -> None:
    """Count one request of `key_id`; raise 429 with `Retry-After` over the limit."""
    now = time.time()
    window = int(now // WINDOW_S)
    name = keys.rate_limit(key_id, window)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, WINDOW_S * 2)  # no NX: Redis 6.2 lacks it
            count, _ = await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("rate limit not enforced: redis unavailable (%s)", type(exc).__name__)
        return
    if int(count) > limit_per_min:
        retry_after = max(1, math.ceil((window + 1) * WINDOW_S - now))
        raise ApiError(
            429,
            f"rate limit of {limit_per_min} requests per minute exceeded; retry in {retry_after} s",
            reason="rate_limit",
            headers={"Retry-After": str(retry_after)},
        )
