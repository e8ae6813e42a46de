"""Queue depth gauges for dashboards and alerts: lag and pending per runner pool.

KEDA reads the same numbers straight from Redis to scale runners; these gauges
are for people (the overview dashboard, RelayQueueBacklogGrowing). Every state
replica reports the same values, so queries take `max by (pool)`. How lag is
counted on Redis 6.2 and 7 is `relay_core.queue_depth`'s (the gateway's admin
overview reads it too).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge
from redis.asyncio import Redis

from relay_core import keys
from relay_core.queue_depth import queue_depth

log = logging.getLogger(__name__)

QUEUE_LAG = Gauge("relay_queue_lag", "Queue entries not yet delivered to a runner", ["pool"])
QUEUE_PENDING = Gauge(
    "relay_queue_pending", "Queue entries delivered but not acknowledged (runs in flight)", ["pool"]
)
DEAD_LETTERS = Gauge("relay_queue_dead_letters", "Entries in the dead-letter stream")
# The gauges sum a pool's partitions (relay_core.queue_depth).


async def sample(redis: Redis) -> None:
    """Read every pool's group once and set the gauges."""
    for pool in keys.POOLS:
        depth = await queue_depth(redis, pool)
        QUEUE_LAG.labels(pool=pool).set(depth.lag)
        QUEUE_PENDING.labels(pool=pool).set(depth.in_flight)
    DEAD_LETTERS.set(await redis.xlen(keys.QUEUE_DEAD))


async def run_forever(redis: Redis, *, interval_s: float) -> None:
    while True:
        try:
            await sample(redis)
        except Exception as exc:  # Redis down: keep the last values, try again
            log.warning("queue metrics not sampled: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)
