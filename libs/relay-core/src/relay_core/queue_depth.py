"""How deep a runner pool's queue is: runs in flight and queue lag, read from Redis.

Two services read it: state exports it as gauges (`relay_queue_lag`,
`relay_queue_pending`, for dashboards and alerts) and the gateway shows it
in the admin overview (`relay top`, the web console). KEDA reads the same
numbers straight from Redis to scale the runners.

- In flight is the group's pending count: entries delivered to a runner and
  not acknowledged, which is every run being executed (a runner acks when
  the run ends) plus any whose runner died and whose lease has not lapsed.
- Lag is Redis 7's `lag` field of XINFO GROUPS; Redis 6.2 (the embedded dev
  server) has none, and Redis 7 reports none after some deletions, so it is
  then counted with an XRANGE after the group's last-delivered id, capped at
  `LAG_COUNT_CAP` ("at least 10,000" is as actionable as the exact number).
- Before any runner has joined (no group), everything queued is lag.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from relay_core import keys

__all__ = ["LAG_COUNT_CAP", "QueueDepth", "queue_depth"]

LAG_COUNT_CAP = 10_000


@dataclass(frozen=True)
class QueueDepth:
    in_flight: int  # delivered, not acknowledged
    lag: int  # not yet delivered


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _group(redis: Redis, stream: str) -> dict[str, object] | None:
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream: nothing was ever queued
        return None
    for group in groups:
        if _text(group.get("name")) == keys.RUNNERS_GROUP:
            return {_text(k): v for k, v in group.items()}
    return None


async def _lag(redis: Redis, stream: str, group: dict[str, object]) -> int:
    lag = group.get("lag")
    if lag is not None:
        return int(_text(lag))
    last = _text(group.get("last-delivered-id") or "0-0")
    entries = await redis.xrange(stream, min="(" + last, max="+", count=LAG_COUNT_CAP)
    return len(entries or [])


async def queue_depth(redis: Redis, pool: str) -> QueueDepth:
    """Runs in flight and queue lag of one runner pool."""
    stream = keys.queue(pool)
    group = await _group(redis, stream)
    if group is None:
        return QueueDepth(0, int(await redis.xlen(stream)))
    pending = int(_text(group.get("pending") or 0))
    return QueueDepth(pending, await _lag(redis, stream, group))
