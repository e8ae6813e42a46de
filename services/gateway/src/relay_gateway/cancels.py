"""Cancelling a run from outside a request: after an interactive client left.

The request that noticed the disconnect is over (its task is being torn down),
so the cancellation runs in a task of its own, retried briefly when state is
unreachable, and tracked so shutdown can wait for the ones in flight. State
records the cancellation durably and raises the runner's fast-path flag; the
runner stops at its next step or batch of tokens and closes the model stream.
"""

from __future__ import annotations

import asyncio
import logging

from relay_core.state_client import Conflict, NotFound, StateClient, StateError

log = logging.getLogger(__name__)


class Canceller:
    def __init__(self, state: StateClient, *, attempts: int = 3, backoff_s: float = 0.2) -> None:
        self._state = state
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, run_id: str, *, user_id: str) -> None:
        task = asyncio.create_task(self._cancel(run_id, user_id), name=f"cancel-{run_id}")
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

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for cancellations in flight, at shutdown."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
