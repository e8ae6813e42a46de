"""Calls that arrive together go together: one send for the calls of many runs.

`Coalescer(send).call(item)` answers the item's own answer, whether it went
alone or with others. Two users, the same shape:

- the state client (`relay_core.state_client`): the creations, claims,
  checkpoints and finishes of every run of a process that wait at the same
  moment go to state as ONE batch request per kind, which state carries out
  item by item exactly as the single calls (`relay_state.batches`). Under a
  burst (200 chats at once) a request's fixed cost (the client's, the
  server's routing, validation and serialization, the event loop's) was
  about half of state's CPU per run;
- small Redis calls (`relay_core.rediscalls`: the runner's, and state's
  queue entries): one pipeline per moment instead of a round trip per call.

Decisions (as `relay_runner.publish` does for event writes):
- No timer: a call goes out at once when no batch of its kind is in flight;
  the calls that arrive while one is in flight go together in the next one,
  sent as soon as it returns. Batches grow with the load; an idle process
  adds no delay.
- At most `max_batch` items per request, so one batch never holds a
  response (and the items behind it) for long.
- Failures stay per item: an item's error status is its caller's exception,
  as for a single call; a request that fails as a whole (state down, a
  timeout) fails every item in it, and each caller retries its own call, as
  it did before. An item whose caller was cancelled before its batch went
  out is not sent.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["MAX_BATCH", "Coalescer"]

MAX_BATCH = 64
T = TypeVar("T")
R = TypeVar("R")

# Sends a batch of items; answers one answer per item, in order (for state's
# batch routes a (status, body); for a Redis pipeline each command's reply).
# An answer that is an exception is raised to that item's caller alone.
Send = Callable[[list[T]], Awaitable[list[R | BaseException]]]


@dataclass(slots=True)
class _Call(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


class Coalescer(Generic[T, R]):
    """`call(item)` answers the item's answer, sent alone or with others.
    `closed`: the message of the ConnectionError that calls still waiting get
    when the coalescer is closed."""

    def __init__(
        self,
        send: Send[T, R],
        *,
        max_batch: int = MAX_BATCH,
        closed: str = "the state client was closed",
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._closed = closed
        self._queue: list[_Call[T, R]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def call(self, item: T) -> R:
        return await self.submit(item)

    def submit(self, item: T) -> asyncio.Future[R]:
        """The item queued for the next batch; its answer's future. Items
        submitted one after another, with no await between, go in the same
        batch (up to `max_batch`), in order."""
        call = _Call(item, asyncio.get_running_loop().create_future())
        self._queue.append(call)
        if self._flusher is None:
            # A fresh context: the flusher serves every caller, it belongs to none.
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        return call.future

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        batch: list[_Call[T, R]] = []
        try:
            while self._queue:
                batch = [c for c in self._queue[: self._max_batch] if not c.future.done()]
                del self._queue[: self._max_batch]
                if batch:
                    await self._deliver(batch)
                batch = []
        finally:
            self._flusher = None
            for c in [*batch, *self._queue]:  # left over only when cancelled (closing)
                if not c.future.done():
                    c.future.set_exception(ConnectionError(self._closed))
            self._queue.clear()

    async def _deliver(self, batch: list[_Call[T, R]]) -> None:
        try:
            answers = await self._send([c.item for c in batch])
        except Exception as exc:
            for c in batch:
                if not c.future.done():
                    c.future.set_exception(exc)
            return
        for c, answer in zip(batch, answers, strict=True):
            if c.future.done():
                continue
            if isinstance(answer, BaseException):
                c.future.set_exception(answer)
            else:
                c.future.set_result(answer)
