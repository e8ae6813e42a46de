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

The gateway counts every authenticated request, the events service every
stream it opens (the same key, so the limit is one); the failed-
authentication throttle (relay_core.auththrottle) is the same GCRA on a key
per client address.

Its state is one key per API key (the "theoretical arrival time", µs, with a
TTL of at most a minute), updated by one Lua script (EVALSHA) that reads
Redis's own clock, so every gateway replica agrees whatever its clock says.
No library: redis-py has none, and the script is a dozen lines.

Why it fails open: when Redis cannot be reached the request goes through
(with a warning in the log), because refusing every read of a run while Redis
blips would turn a guardrail into an outage; submitting a run still needs
Redis (the kill switch and the queue) and answers 503 then.

But never wide open: each process also keeps its own GCRA per key
(`LocalLimiter`), counting only the requests it let through, so it is a lower
bound of the shared state. A key already over its limit in this process is
refused without a Redis call (a burst of 1,000 stream opens by one key costs
Redis the limit's worth of calls, not 1,000, and cannot exhaust the pool),
and when Redis cannot answer (down, or its connection pool exhausted by a
burst) this process still holds the key to its limit.

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
import time
from collections import OrderedDict

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from relay_core import keys
from relay_core.errors import ApiError
from relay_core.rediscalls import RedisCalls

log = logging.getLogger(__name__)

PERIOD_US = 60_000_000  # the limit is per minute

# KEYS: the key's theoretical arrival time (TAT, µs since the epoch: exact in
# Lua's doubles). ARGV: the emission interval (µs between two requests at the
# steady rate), the period (µs), "0" to only look (count nothing). Returns 0
# (counted, or would be) or the µs until this request would be accepted.
_GCRA = """
local clock = redis.call('TIME')
local now = clock[1] * 1000000 + clock[2]
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - tonumber(ARGV[2]) - now
if wait > 0 then return wait end
if ARGV[3] == '0' then return 0 end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return 0
"""
_GCRA_SHA = hashlib.sha1(_GCRA.encode(), usedforsecurity=False).hexdigest()


async def take(
    redis: Redis,
    name: str,
    *,
    limit_per_min: int,
    count: bool = True,
    calls: RedisCalls | None = None,
) -> int:
    """One GCRA step on the state at `name`: 0 when a request passes (counted
    unless `count` is false), else the µs until one would. Raises RedisError.
    With `calls`, the step goes in the process's next coalesced pipeline."""
    interval_us = max(1, PERIOD_US // max(1, limit_per_min))
    args = (interval_us, PERIOD_US, "1" if count else "0")
    if calls is not None:
        return int(await calls.script(calls.register(_GCRA), [name], list(args)))
    try:
        wait_us = await redis.evalsha(_GCRA_SHA, 1, name, *args)
    except NoScriptError:  # a Redis that has not seen the script yet (or restarted)
        wait_us = await redis.eval(_GCRA, 1, name, *args)
    return int(wait_us)


def retry_after_s(wait_us: int) -> int:
    return max(1, math.ceil(wait_us / 1_000_000))


class LocalLimiter:
    """This process's GCRA per key (µs, its monotonic clock), for at most
    `max_keys` keys (least recently used out first)."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._max = max_keys
        self._tat: OrderedDict[str, int] = OrderedDict()

    def take(self, name: str, *, limit_per_min: int, count: bool = True) -> int:
        """0 when a request passes here (counted unless `count` is false), else
        the µs until one would."""
        now = time.monotonic_ns() // 1000
        interval = max(1, PERIOD_US // max(1, limit_per_min))
        tat = max(self._tat.get(name, now), now)
        wait = tat + interval - PERIOD_US - now
        if wait > 0:
            return wait
        if count:
            self._tat[name] = tat + interval
            self._tat.move_to_end(name)
            while len(self._tat) > self._max:
                self._tat.popitem(last=False)
        return 0


def _refusal(limit_per_min: int, wait_us: int) -> ApiError:
    retry_after = retry_after_s(wait_us)
    return ApiError(
        429,
        f"rate limit of {limit_per_min} requests per minute exceeded; retry in {retry_after} s",
        reason="rate_limit",
        headers={"Retry-After": str(retry_after)},
    )


async def check_rate(
    redis: Redis,
    *,
    key_id: str,
    limit_per_min: int,
    local: LocalLimiter | None = None,
    calls: RedisCalls | None = None,
) -> None:
    """Count one request of `key_id`; raise 429 with `Retry-After` over the limit.
    With `local` (this process's view), a key over its limit here is refused
    without asking Redis, and held to its limit here when Redis cannot answer.
    With `calls`, the count goes in the process's next coalesced pipeline."""
    if local is not None and (wait := local.take(key_id, limit_per_min=limit_per_min, count=False)):
        raise _refusal(limit_per_min, wait)
    try:
        wait_us = await take(
            redis, keys.rate_limit(key_id), limit_per_min=limit_per_min, calls=calls
        )
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("rate limit not shared: redis unavailable (%s)", type(exc).__name__)
        wait_us = local.take(key_id, limit_per_min=limit_per_min) if local is not None else 0
        if wait_us > 0:
            raise _refusal(limit_per_min, wait_us) from None
        return
    if wait_us > 0:
        raise _refusal(limit_per_min, wait_us)
    if local is not None:
        local.take(key_id, limit_per_min=limit_per_min)  # what Redis let through
