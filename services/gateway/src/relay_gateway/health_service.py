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

from relay_core.errors import error_body
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
    checks = {"state": "ok" if state_ok else "down", "redis": "ok" if redis_ok else "down"}
    if state_ok and redis_ok:
        return True, {"status": "ready", "checks": checks}
    down = [name for name, value in checks.items() if value != "ok"]
    reason = f"{down[0]}_unavailable" if len(down) == 1 else "dependencies_unavailable"
    body: dict[str, object] = error_body(
        "unavailable", f"not ready: {', '.join(down)} down", reason
    )
    body["checks"] = checks
    return False, body
