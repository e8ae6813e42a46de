"""Interactive capacity: admit an interactive run only when a runner slot is free.

The admission itself is `relay_core.capacity.PoolCapacity` (one Lua script
over the slots live runners advertise and the runs already admitted, so two
gateways never take the last slot twice). This module adds what the gateway
owes the client and the operator:

- **Wait in turn, then 429, never a hang.** A run with no slot waits in its
  tenant's queue, and the waiting tenants are served in turn, each up to its
  share of the pool (`relay_core.capacity`), for up to
  `interactive_queue_timeout_s`; past that the answer is 429 with
  `Retry-After`. The admission is a member of the pool's admitted set scored
  by `interactive_admission_ttl_s` (a bound on an interactive run's life), so
  a release that never comes (a crashed runner or gateway) frees the slot
  anyway. It is released by `relay_core.run_protocol`: in the run's `done`
  (written by the runner, or by state for a run cancelled while queued), or
  by the gateway's `Admission.release` when the run is not created.
- **Usage for /healthz and /metrics without touching Redis per probe.** A
  watcher re-reads `(admitted, capacity)` every `kill_switch_refresh_s`;
  `None` (and -1 in the gauges) means Redis did not answer lately.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis

from relay_core.background import PeriodicRefresh
from relay_core.capacity import PoolCapacity
from relay_core.errors import ApiError
from relay_gateway.killswitch import REDIS_ERRORS, redis_unavailable
from relay_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

POOL = "interactive"
# Interactive runs are short: a slot is usually free again within seconds.
RETRY_AFTER_S = 2


class InteractiveCapacity(PeriodicRefresh):
    task_name = "interactive-capacity-watcher"

    def __init__(
        self,
        redis: Redis,
        metrics: GatewayMetrics,
        *,
        wait_s: float,
        admission_ttl_s: float,
        refresh_s: float,
    ) -> None:
        super().__init__(refresh_s)
        self.pool = PoolCapacity(redis, POOL)
        self._metrics = metrics
        self._wait_s = wait_s
        self._admission_ttl_s = admission_ttl_s
        self.in_flight: int | None = None
        self.capacity: int | None = None

    async def admit(self, run_id: str, *, user_id: str, share: float) -> None:
        """Take a slot for `run_id` within the wait, in turn with the other waiting
        tenants and within `user_id`'s `share`, else raise 429 (503 if Redis is down)."""
        started = time.perf_counter()
        try:
            admitted = await self.pool.admit(
                run_id,
                wait_s=self._wait_s,
                max_run_s=self._admission_ttl_s,
                user_id=user_id,
                share=share,
            )
        except REDIS_ERRORS as exc:
            raise redis_unavailable("cannot admit the interactive run") from exc
        self._metrics.admission_wait.observe(time.perf_counter() - started)
        if not admitted:
            self._metrics.admissions_refused.labels("interactive_capacity").inc()
            raise ApiError(
                429,
                f"no interactive runner slot for you within {self._wait_s:g} s (every slot "
                "busy, or your share of the pool in use)",
                reason="interactive_capacity",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )

    def _observe(self, usage: tuple[int, int] | None) -> None:
        self.in_flight, self.capacity = usage if usage is not None else (None, None)
        self._metrics.interactive_in_flight.set(-1 if self.in_flight is None else self.in_flight)
        self._metrics.interactive_capacity.set(-1 if self.capacity is None else self.capacity)

    async def refresh(self) -> None:
        try:
            self._observe(await self.pool.usage())
        except REDIS_ERRORS:
            self._observe(None)

    async def leave(self, run_id: str, *, user_id: str) -> None:
        """`run_id` stops waiting for a slot (an idempotent replay needs none)."""
        try:
            await self.pool.leave(run_id, user_id=user_id)
        except REDIS_ERRORS as exc:  # its heartbeat lapses instead
            log.warning("could not leave the interactive queue (%s)", type(exc).__name__)
