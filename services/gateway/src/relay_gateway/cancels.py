"""Cancelling a run from outside a request: after an interactive client left, and
after a submission whose creation in state may have happened unseen.

The request that noticed the problem is over (or its task is being torn down),
so the cancellation runs in a task of its own, retried, and tracked so
shutdown can wait for the ones in flight. State records the cancellation
durably and raises the runner's fast-path flag; the runner stops at its next
step or batch of tokens and closes the model stream. Two cases:

- `request`: a client left its interactive stream. The run exists; it is
  retried briefly when state is unreachable, and a 404 or 409 ends it.
- `request_orphan`: `create_run` timed out (or its connection dropped) after
  the request went out, so state may still create the run under the id the
  gateway minted, and it would execute for nobody (the client was answered
  503 and its slots were given back). That run may not exist YET (its insert
  can be waiting on a lock in state), so a 404 is retried too, with backoff,
  until `orphan_horizon_s`, longer than state can take to finish a request it
  received (its own statement and Redis budgets are a few seconds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from relay_core.state_client import Conflict, NotFound, StateClient, StateError

log = logging.getLogger(__name__)

ORPHAN_HORIZON_S = 30.0
ORPHAN_MAX_BACKOFF_S = 2.0


class Canceller:
    def __init__(
        self,
        state: StateClient,
        *,
        attempts: int = 3,
        backoff_s: float = 0.2,
        orphan_horizon_s: float = ORPHAN_HORIZON_S,
    ) -> None:
        self._state = state
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._orphan_horizon_s = orphan_horizon_s
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, run_id: str, *, user_id: str) -> None:
        self._spawn(self._cancel(run_id, user_id), f"cancel-{run_id}")

    def request_orphan(self, run_id: str, *, user_id: str) -> None:
        """Cancel `run_id` if state creates it (or created it) after all."""
        self._spawn(self._cancel_orphan(run_id, user_id), f"cancel-orphan-{run_id}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel(self, run_id: str, user_id: str) -> None:
        for attempt in range(1, self._attempts + 1):
            try:
                await self._state.cancel_run(run_id, user_id=user_id)
            except (NotFound, Conflict):
                return  # gone or already finished: nothing to stop
            except StateError as exc:
                if attempt == self._attempts:
                    log.warning(
                        "could not cancel an abandoned run: %s", exc, extra={"run_id": run_id}
                    )
                    return
                await asyncio.sleep(self._backoff_s * attempt)
            else:
                log.info("abandoned run cancelled", extra={"run_id": run_id})
                return

    async def _cancel_orphan(self, run_id: str, user_id: str) -> None:
        deadline = time.monotonic() + self._orphan_horizon_s
        delay = self._backoff_s
        while True:
            try:
                run = await self._state.cancel_run(run_id, user_id=user_id)
            except Conflict:
                return
            except StateError as exc:  # NotFound included: it may not exist yet
                if time.monotonic() + delay > deadline:
                    created = "never created" if isinstance(exc, NotFound) else str(exc)
                    log.info(
                        "run of a timed-out submission not cancelled: %s",
                        created,
                        extra={"run_id": run_id},
                    )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, ORPHAN_MAX_BACKOFF_S)
            else:
                log.warning(
                    "a timed-out submission was created after all; run cancelled",
                    extra={"run_id": run_id, "status": run.status},
                )
                return

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for cancellations in flight, at shutdown."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
