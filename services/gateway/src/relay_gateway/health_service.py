"""Liveness and readiness.

`/healthz` never touches a dependency: it answers from memory (the kill
switch and the interactive pool's usage as last read by their watchers,
requests and streams in flight), so a
process with Redis and state down is still alive. `/readyz` checks state and
Redis concurrently, each within the dependency timeout, and names what is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from relay_core.errors import readiness_answer
from relay_core.redis import ping
from relay_gateway.runtime import Runtime
from relay_gateway.schemas import Health


def health(*, runtime: Runtime) -> Health:
    metrics = runtime.metrics
    return Health(
        kill_switch=runtime.kill_switch.enabled,
        requests_in_flight=metrics.requests_now,
        streams_open=metrics.streams_now,
        interactive_in_flight=runtime.interactive.in_flight,
        interactive_capacity=runtime.interactive.capacity,
    )


async def _bounded(check: Awaitable[bool], timeout_s: float) -> bool:
    try:
        return await asyncio.wait_for(check, timeout_s)
    except (TimeoutError, OSError):
        return False


async def readiness(*, runtime: Runtime) -> tuple[bool, dict[str, object]]:
    """(ready, body): the body is `{"status", "checks"}` or an error naming what is down."""
    timeout_s = runtime.settings.dependency_timeout_s
    state_ok, redis_ok = await asyncio.gather(
        _bounded(runtime.state.ready(), timeout_s),
        _bounded(ping(runtime.redis), timeout_s),
    )
    return readiness_answer({"state": state_ok, "redis": redis_ok})
