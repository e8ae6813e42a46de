"""Queue depth gauges for dashboards and alerts: lag and pending per runner pool.

KEDA reads the same numbers straight from Redis to scale runners; these gauges
are for people (the overview dashboard, RelayQueueBacklogGrowing). Every state
replica reports the same values, so queries take `max by (pool)`.

Redis 7 reports a group's `lag` in XINFO GROUPS; Redis 6.2 (the embedded dev
server) does not, so lag is then counted with an XRANGE after the group's
last-delivered id, capped at `LAG_COUNT_CAP` (a gauge that says "at least
10,000" is as actionable as the exact figure).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge
from redis.asyncio import Redis

from relay_core import keys

log = logging.getLogger(__name__)

LAG_COUNT_CAP = 10_000
QUEUE_LAG = Gauge("relay_queue_lag", "Queue entries not yet delivered to a runner", ["pool"])
QUEUE_PENDING = Gauge(
    "relay_queue_pending", "Queue entries delivered but not acknowledged (runs in flight)", ["pool"]
)
DEAD_LETTERS = Gauge("relay_queue_dead_letters", "Entries in the dead-letter stream")


def _exclusive(stream_id: str) -> str:
    return "(" + stream_id


async def _lag(redis: Redis, stream: str, group: dict[str, object]) -> int:
    lag = group.get("lag")
    if lag is not None:
        return int(str(lag))
    last = str(group.get("last-delivered-id") or "0-0")
    entries = await redis.xrange(stream, min=_exclusive(last), max="+", count=LAG_COUNT_CAP)
    return len(entries or [])


async def sample(redis: Redis) -> None:
    """Read every pool's group once and set the gauges."""
    for pool in keys.POOLS:
        stream = keys.queue(pool)
        try:
            groups = await redis.xinfo_groups(stream)
        except Exception:  # no stream yet: nothing queued
            groups = []
        group = next((g for g in groups if g.get("name") == keys.RUNNERS_GROUP), None)
        if group is None:
            QUEUE_LAG.labels(pool=pool).set(await redis.xlen(stream))
            QUEUE_PENDING.labels(pool=pool).set(0)
            continue
        QUEUE_LAG.labels(pool=pool).set(await _lag(redis, stream, group))
        QUEUE_PENDING.labels(pool=pool).set(int(group.get("pending") or 0))
    DEAD_LETTERS.set(await redis.xlen(keys.QUEUE_DEAD))


async def run_forever(redis: Redis, *, interval_s: float) -> None:
    while True:
        try:
            await sample(redis)
        except Exception as exc:  # Redis down: keep the last values, try again
            log.warning("queue metrics not sampled: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)
