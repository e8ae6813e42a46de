"""How late the runner's event loop runs its callbacks: `relay_runner_event_loop_lag_seconds`.

Why: a runner holds hundreds of runs on one event loop; when the loop is
busy (a burst of starts, thousands of tokens a second) every run's next step,
token and heartbeat-driven work waits behind it, and nothing else shows that
wait. A task asks to wake up every `interval_s` and records by how much it
woke up late, as a histogram (p99 over a window from its buckets). It costs
one timer per interval, run or no run.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Histogram

__all__ = ["LAG", "watch_loop_lag"]

LAG = Histogram(
    "relay_runner_event_loop_lag_seconds",
    "How late the event loop ran a timer due now (sampled every 50 ms)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)


async def watch_loop_lag(interval_s: float = 0.05) -> None:
    """Record the loop's lag forever (cancel to stop)."""
    while True:
        due = time.perf_counter() + interval_s
        await asyncio.sleep(interval_s)
        LAG.observe(max(0.0, time.perf_counter() - due))
