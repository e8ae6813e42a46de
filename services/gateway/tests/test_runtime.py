"""Regression: the gateway's shutdown hung when it came right after start-up.

What broke (seen as a test teardown stuck for minutes): a shutdown that lands
while the Redis clients are still opening their first connections. redis-py
(8.1) can swallow a cancellation in that window, so the kill switch watcher,
stopped by cancellation alone, kept looping; and the event hub's `stop()`
could raise (redis-py's writer gone mid-connect), which skipped every close
after it. The watcher now stops on a flag and each shutdown step is guarded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from relay_devstack.procs import free_port
from relay_gateway.app import create_app
from relay_gateway.config import GatewaySettings


async def test_shutdown_right_after_start_never_hangs(gw_redis_url: str) -> None:
    settings = GatewaySettings(
        dev_mode=True,
        state_url=f"http://127.0.0.1:{free_port()}",
        redis_url=gw_redis_url,
        kill_switch_refresh_s=0.05,
    )
    for delay_s in (0, 0.001, 0.01, 0.03):  # inside and just after the first connects
        app = create_app(settings)

        async def start_and_stop(app: Any = app, delay_s: float = delay_s) -> None:
            async with app.router.lifespan_context(app):
                await asyncio.sleep(delay_s)

        await asyncio.wait_for(start_and_stop(), timeout=5)
        leftovers = [
            t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()
        ]
        assert not leftovers, leftovers
