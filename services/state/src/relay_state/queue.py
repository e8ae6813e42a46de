"""The Redis side of a run's life: queue entry, lease, cancel flag, terminal event.

Decisions:

- The queue entry and the `enqueued` marker are written in one MULTI, so the
  marker exists exactly when the entry was written; the reconciler reads a
  missing marker (with no lease either) as "Redis lost it" and enqueues again.
- The lease is `consumer:attempt` with a TTL. Taking it is one Lua script (set
  if absent, else report the holder) so two claimers never both see it free;
  releasing it is compare-and-delete, so a late release never removes the
  lease of a newer attempt.
- These functions raise `RedisError`; callers decide what is a 503 (the
  lease) and what is best effort (what follows a commit: enqueue, the cancel
  flag, cleanup). Best-effort work runs under `best_effort`, which also bounds
  its time: a hung Redis must not hold the answer about a write that Postgres
  already made durable past the caller's own timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core import events
from relay_core import keys as redis_keys
from relay_core.state_api import RunOut

log = logging.getLogger(__name__)

# Time allowed for the Redis work after a commit, within the callers' ~2 s.
BEST_EFFORT_BUDGET_S = 0.75
# The marker outlives any sane queue wait; when it expires on a run still
# queued, the reconciler enqueues it again, and claims deduplicate.
MARKER_TTL_S = 7 * 24 * 3600
CANCEL_FLAG_TTL_S = 7 * 24 * 3600

_TAKE_LEASE = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, ARGV[1]}
end
return {0, cur}
"""

_RELEASE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RELEASE_IF_ATTEMPT = """
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, -string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


async def best_effort(work: Awaitable[object], *, what: str, run_id: str | None = None) -> bool:
    """Run Redis work whose failure is logged, not raised (Postgres holds the truth)."""
    try:
        async with asyncio.timeout(BEST_EFFORT_BUDGET_S):  # no task per call, unlike wait_for
            await work
    except (RedisError, TimeoutError) as exc:
        log.warning("%s failed: %s", what, type(exc).__name__, extra={"run_id": run_id})
        return False
    return True


def lease_value(consumer: str, attempt: int) -> str:
    return f"{consumer}:{attempt}"


def lease_holder(value: str) -> str:
    """The consumer part of a lease value."""
    return value.rsplit(":", 1)[0]


async def enqueue(*, redis: Redis, run_id: str, kind: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(redis_keys.queue(kind), {"run_id": run_id})
        pipe.set(redis_keys.enqueued(run_id), "1", ex=MARKER_TTL_S)
        await pipe.execute()


async def missing_from_queue(*, redis: Redis, run_ids: list[str]) -> list[str]:
    """The runs with neither an `enqueued` marker nor a lease."""
    if not run_ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for run_id in run_ids:
            pipe.exists(redis_keys.enqueued(run_id), redis_keys.lease(run_id))
        counts = await pipe.execute()
    return [run_id for run_id, count in zip(run_ids, counts, strict=True) if count == 0]


async def take_lease(
    *, redis: Redis, run_id: str, consumer: str, attempt: int, ttl_s: float
) -> tuple[bool, str]:
    """(taken now, current value). Not taken: the value names the holder."""
    ttl_ms = max(1, int(ttl_s * 1000))
    value = lease_value(consumer, attempt)
    taken, current = await redis.eval(_TAKE_LEASE, 1, redis_keys.lease(run_id), value, ttl_ms)
    return bool(taken), str(current)


async def set_lease(
    *, redis: Redis, run_id: str, consumer: str, attempt: int, ttl_s: float
) -> None:
    await redis.set(
        redis_keys.lease(run_id), lease_value(consumer, attempt), px=max(1, int(ttl_s * 1000))
    )


async def release_lease(*, redis: Redis, run_id: str, value: str) -> None:
    await redis.eval(_RELEASE_IF_EQUAL, 1, redis_keys.lease(run_id), value)


async def settle(*, redis: Redis, run_id: str, attempt: int) -> None:
    """After a run finished: drop its marker, and its lease if this attempt holds it."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(redis_keys.enqueued(run_id))
        pipe.eval(_RELEASE_IF_ATTEMPT, 1, redis_keys.lease(run_id), f":{attempt}")
        await pipe.execute()


async def flag_cancel(*, redis: Redis, run_id: str) -> None:
    await redis.set(redis_keys.cancel(run_id), "1", ex=CANCEL_FLAG_TTL_S)


async def publish_done(*, redis: Redis, run: RunOut, status: str, retention_s: float) -> None:
    """The terminal event of a run no runner will write (cancelled while queued).

    Like a runner's `done`, it takes the run out of its user's active runs and
    out of its pool's admissions (the gateway added it to both at submit), so
    a run cancelled before any runner saw it does not hold a slot.
    """
    run_id = run.run_id
    stream = redis_keys.events(run_id)
    async with redis.pipeline(transaction=True) as pipe:
        fields: dict[Any, Any] = events.encode_fields(events.done(status, run.cost_usd))
        pipe.xadd(stream, fields)
        pipe.expire(stream, max(1, int(retention_s)))
        pipe.delete(redis_keys.enqueued(run_id))
        pipe.srem(redis_keys.user_active_runs(run.user_id), run_id)
        pipe.zrem(redis_keys.pool_admitted(run.kind), run_id)
        await pipe.execute()
