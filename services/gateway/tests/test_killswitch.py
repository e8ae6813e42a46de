"""The kill switch key in real Redis, and the watcher behind /healthz and /metrics."""

from __future__ import annotations

from typing import Any

import pytest

from relay_core import keys
from relay_core.errors import ApiError
from relay_core.redis import create_redis
from relay_devstack.procs import free_port
from relay_gateway import killswitch
from relay_gateway.killswitch import KillSwitchWatcher
from relay_gateway.metrics import GatewayMetrics


async def test_write_then_read(redis: Any) -> None:
    try:
        await killswitch.write(redis, enabled=True)
        assert await redis.get(keys.KILL_SWITCH) == "1"
        assert await killswitch.read(redis) is True
        await killswitch.write(redis, enabled=False)
        assert await killswitch.read(redis) is False
    finally:
        await redis.delete(keys.KILL_SWITCH)


async def test_unreadable_redis_is_503_with_reason() -> None:
    dead = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    try:
        with pytest.raises(ApiError) as err:
            await killswitch.read(dead)
        assert err.value.status == 503 and err.value.reason == "redis_unavailable"
    finally:
        await dead.aclose()


async def test_watcher_follows_the_key_and_sets_the_gauge(redis: Any, poll: Any) -> None:
    metrics = GatewayMetrics()
    watcher = KillSwitchWatcher(redis, metrics, interval_s=0.05)
    watcher.start()
    try:
        await poll(lambda: _is(watcher, False), timeout_s=3, what="watcher reads 'off'")
        await redis.set(keys.KILL_SWITCH, "1")
        await poll(lambda: _is(watcher, True), timeout_s=3, what="watcher reads 'on'")
        assert b"relay_gateway_kill_switch 1.0" in metrics.render()[0]
    finally:
        await redis.delete(keys.KILL_SWITCH)
        await watcher.stop()


async def _is(watcher: KillSwitchWatcher, value: bool) -> bool:
    return watcher.enabled is value
