"""The kill switch: one Redis key (`relay_core.keys.KILL_SWITCH`) every replica reads.

A submit reads the key itself (in its admission round trip, `admit_script`), so a switch
flipped on one replica refuses new runs on all of them at once (runners read
the same key between steps).
`KillSwitchWatcher` re-reads it in the background only for what must not wait
on Redis: `/healthz` and the metrics gauge, which report `None` (-1) when
Redis has not answered lately rather than a stale value.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core import keys
from relay_core.background import PeriodicRefresh
from relay_core.errors import ApiError
from relay_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def redis_unavailable(what: str) -> ApiError:
    return ApiError(503, f"{what}: Redis unavailable", reason="redis_unavailable")


async def read(redis: Redis) -> bool:
    """Whether the kill switch is on; raises 503 when Redis cannot be read."""
    try:
        value = await redis.get(keys.KILL_SWITCH)
    except REDIS_ERRORS as exc:
        raise redis_unavailable("cannot read the kill switch") from exc
    return value == "1"


async def write(redis: Redis, *, enabled: bool) -> None:
    try:
        if enabled:
            await redis.set(keys.KILL_SWITCH, "1")
        else:
            await redis.delete(keys.KILL_SWITCH)
    except REDIS_ERRORS as exc:
        raise redis_unavailable("cannot set the kill switch") from exc


class KillSwitchWatcher(PeriodicRefresh):
    task_name = "kill-switch-watcher"

    def __init__(self, redis: Redis, metrics: GatewayMetrics, *, interval_s: float) -> None:
        super().__init__(interval_s)
        self._redis = redis
        self._metrics = metrics
        self.enabled: bool | None = None

    def observe(self, enabled: bool | None) -> None:
        if enabled != self.enabled and enabled is not None:
            log.info("kill switch is %s", "on" if enabled else "off")
        self.enabled = enabled
        self._metrics.kill_switch.set(-1 if enabled is None else int(enabled))

    async def refresh(self) -> None:
        try:
            self.observe(await read(self._redis))
        except ApiError:
            self.observe(None)
