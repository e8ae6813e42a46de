"""Per-API-key request rate limit: GCRA (a leaky bucket kept as one timestamp) in Redis.

A key with a limit of N requests per minute may send a burst of N, then one
request every 60/N seconds; a refused request gets `Retry-After` = the
seconds until its next request would pass (about 60/N, not the rest of a
minute). Over any minute a key gets about 2N requests at most (a full burst,
then N more at the steady rate), and never more than N at once.

Why GCRA rather than the fixed one-minute window it replaced: the window let
2N requests through in an instant across its boundary, and a client refused
early in a window waited for its end, up to 60 s; GCRA spreads the rate
evenly and its refusals are short.

Its state is one key per API key (the "theoretical arrival time", µs, with a
TTL of at most a minute), updated by one Lua script (EVALSHA) that reads
Redis's own clock, so every gateway replica agrees whatever its clock says.
No library: redis-py has none, and the script is a dozen lines.

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
run it asks about (if any) is untouched, and the same retry after its
`Retry-After` gets the replay.
"""

from __future__ import annotations

import hashlib
import logging
import math

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from relay_core import keys
from relay_core.errors import ApiError

log = logging.getLogger(__name__)

PERIOD_US = 60_000_000  # the limit is per minute

# KEYS: the key's theoretical arrival time (TAT, µs since the epoch: exact in
# Lua's doubles). ARGV: the emission interval (µs between two requests at the
# steady rate), the period (µs). Returns 0 (counted) or the µs until this
# request would be accepted.
_GCRA = """
local clock = redis.call('TIME')
local now = clock[1] * 1000000 + clock[2]
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - tonumber(ARGV[2]) - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return 0
"""
_GCRA_SHA = hashlib.sha1(_GCRA.encode(), usedforsecurity=False).hexdigest()


async def _take(redis: Redis, name: str, interval_us: int) -> int:
    try:
        wait_us = await redis.evalsha(_GCRA_SHA, 1, name, interval_us, PERIOD_US)
    except NoScriptError:  # a Redis that has not seen the script yet (or restarted)
        wait_us = await redis.eval(_GCRA, 1, name, interval_us, PERIOD_US)
    return int(wait_us)


async def check_rate(redis: Redis, *, key_id: str, limit_per_min: int) -> None:
    """Count one request of `key_id`; raise 429 with `Retry-After` over the limit."""
    interval_us = max(1, PERIOD_US // max(1, limit_per_min))
    try:
        wait_us = await _take(redis, keys.rate_limit(key_id), interval_us)
    except (RedisError, OSError) as exc:
        log.warning("rate limit not enforced: redis unavailable (%s)", type(exc).__name__)
        return
    if wait_us > 0:
        retry_after = max(1, math.ceil(wait_us / 1_000_000))
        raise ApiError(
            429,
            f"rate limit of {limit_per_min} requests per minute exceeded; retry in {retry_after} s",
            reason="rate_limit",
            headers={"Retry-After": str(retry_after)},
        )
