"""Per-API-key request rate limit: a fixed one-minute window counter in Redis.

Why a fixed window: one INCR and EXPIRE per request, shared by every gateway
replica, with an exact `Retry-After` (the seconds left in the window). They
run as one Lua script (EVALSHA): one command and one reply, which costs the
gateway less than a MULTI/EXEC pipeline of the same two commands. Its known
weakness, up to twice the limit across a window boundary, is acceptable for
a guardrail whose job is to stop floods.

Why it fails open: when Redis cannot be reached the request goes through
(with a warning in the log), because refusing every read of a run while Redis
blips would turn a guardrail into an outage; submitting a run still needs
Redis (the kill switch and the queue) and answers 503 then.

Why an idempotent retry is rate limited like any request (unlike the
concurrent-runs limit and a full interactive pool, which answer a retry under
an `Idempotency-Key` with its earlier run, see `admission`): the limit is
counted in the auth dependency, before the body is read, so telling a replay
from a new run there would take a lookup in state (Postgres) for every
refused request that carries a key, and a client flooding with made-up keys
would turn the cheap Redis refusal this guardrail exists for into database
load. The refusal is also harmless to the key: it carries `Retry-After`, the
run it asks about (if any) is untouched, and the same retry after the window
gets the replay.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from relay_core import keys
from relay_core.errors import ApiError

log = logging.getLogger(__name__)

WINDOW_S = 60

# KEYS: the window's counter. ARGV: its lifetime (s). Returns the new count.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return count
"""
_COUNT_SHA = hashlib.sha1(_COUNT.encode(), usedforsecurity=False).hexdigest()


async def _count(redis: Redis, name: str) -> int:
    try:
        count = await redis.evalsha(_COUNT_SHA, 1, name, WINDOW_S * 2)
    except NoScriptError:  # a Redis that has not seen the script yet (or restarted)
        count = await redis.eval(_COUNT, 1, name, WINDOW_S * 2)
    return int(count)


async def check_rate(redis: Redis, *, key_id: str, limit_per_min: int) -> None:
    """Count one request of `key_id`; raise 429 with `Retry-After` over the limit."""
    now = time.time()
    window = int(now // WINDOW_S)
    name = keys.rate_limit(key_id, window)
    try:
        count = await _count(redis, name)
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
