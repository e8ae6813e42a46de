"""A task a service starts in its lifespan and stops on the way out.

`BackgroundLoop` owns the task's life: `start()` creates it, `await stop()`
ends it. The stop sets a flag as well as cancelling: redis-py (8.1) can
swallow a cancellation that lands while it opens a connection, so a loop
checks `stopping` and sleeps through `pause()`, which the flag cuts short.
`PeriodicRefresh` is the common case: `refresh()` now, then every
`interval_s` until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["BackgroundLoop", "PeriodicRefresh"]


class BackgroundLoop:
    task_name = "background-loop"

    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name=self.task_name)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the loop is being stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _loop(self) -> None:
        raise NotImplementedError


class PeriodicRefresh(BackgroundLoop):
    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self._interval_s = interval_s

    async def refresh(self) -> None:
        raise NotImplementedError

    async def _loop(self) -> None:
        while not self.stopping:
            await self.refresh()
            await self.pause(self._interval_s)
