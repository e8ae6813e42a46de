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
- A pool's queue is one stream per partition (`relay_core.keys.queue`): the
  depth is the sum over them, read with one pipeline (one round trip per
  node on a Redis Cluster) and a lag count only where Redis gave none.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from relay_core import keys, partitions

__all__ = ["LAG_COUNT_CAP", "QueueDepth", "queue_depth"]

LAG_COUNT_CAP = 10_000


@dataclass(frozen=True)
class QueueDepth:
    in_flight: int  # delivered, not acknowledged
    lag: int  # not yet delivered


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _runners_group(groups: object) -> dict[str, object] | None:
    if isinstance(groups, ResponseError):  # no such stream: nothing was ever queued
        return None
    for group in groups or []:  # type: ignore[attr-defined]
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
    """Runs in flight and queue lag of one runner pool (all its partitions)."""
    streams = [keys.queue(pool, p) for p in range(partitions.count())]
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xinfo_groups(stream)
            pipe.xlen(stream)
        replies = await pipe.execute(raise_on_error=False)
    for reply in replies:  # a refused command means no stream; any other error is Redis down
        if isinstance(reply, Exception) and not isinstance(reply, ResponseError):
            raise reply
    in_flight = lag = 0
    for i, stream in enumerate(streams):
        group, length = _runners_group(replies[2 * i]), replies[2 * i + 1]
        if group is None:
            lag += length if isinstance(length, int) else 0
            continue
        in_flight += int(_text(group.get("pending") or 0))
        lag += await _lag(redis, stream, group)
    return QueueDepth(in_flight, lag)
