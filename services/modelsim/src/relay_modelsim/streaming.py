"""Paced SSE bodies, and a response that notices when the client goes away.

Decisions:

- Pacing is separate from encoding: a provider module turns a reply into a
  plain sequence of `Chunk`s (pure, easy to test); `paced()` adds the time to
  first token, the delay between tokens, the mid-stream failure and the token
  counting, the same way for both providers.
- `EventStreamResponse` always races the body against the client's
  `http.disconnect`, whatever ASGI spec version the server announces: uvicorn's
  `send()` silently drops writes to a closed connection, so without a watcher a
  stream to a gone client would keep "generating" until its end. On a
  disconnect the body task is cancelled at once (mid-sleep), which is how
  generation stops immediately, and the stream is counted as closed early.
- `streams_open` is decremented in a `finally`, so a cancellation (disconnect or
  server shutdown) cannot leak an open stream in the stats. Only a client
  disconnect counts as `streams_closed_early`; a stream cut by our own
  shutdown gets the provider's error event instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from dataclasses import dataclass

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from relay_modelsim.directives import FailSpec
from relay_modelsim.stats import Tracker

__all__ = ["Chunk", "EventStreamResponse", "Pacing", "paced"]

logger = logging.getLogger(__name__)

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@dataclass(frozen=True)
class Chunk:
    """Encoded SSE bytes; `tokens` output tokens it carries; `head` goes out before TTFT."""

    data: bytes
    tokens: int = 0
    head: bool = False


@dataclass(frozen=True)
class Pacing:
    ttft_s: float
    token_delay_s: float


async def paced(
    chunks: Iterable[Chunk],
    *,
    pacing: Pacing,
    fail: FailSpec | None,
    error_data: bytes,
    tracker: Tracker,
) -> AsyncGenerator[bytes, None]:
    """Yield the chunks in real time; with `fail`, an error after `after_tokens` tokens."""
    sent = 0
    started = False
    for chunk in chunks:
        if not chunk.head:
            if fail is not None and sent >= fail.after_tokens:
                tracker.error_injected()
                yield error_data
                return
            if not started:
                started = True
                await _sleep(pacing.ttft_s)
            elif chunk.tokens and sent:
                await _sleep(pacing.token_delay_s)
        sent += chunk.tokens
        tracker.tokens(chunk.tokens)
        yield chunk.data


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` response that counts itself in the stats.

    `farewell` is the provider's error event, sent when the server cancels the
    stream at the end of its shutdown grace period: the client learns why its
    stream ended, and the response completes instead of erroring in the log.
    """

    def __init__(
        self, body: AsyncGenerator[bytes, None], *, tracker: Tracker, farewell: bytes
    ) -> None:
        super().__init__(body, media_type="text/event-stream", headers=SSE_HEADERS)
        self._body = body
        self._tracker = tracker
        self._farewell = farewell
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._tracker.stream_opened()
        client_gone = False
        try:
            client_gone = not await self._race(receive, send)
        except asyncio.CancelledError:
            # Only the server cancels us (the client's disconnect is handled in
            # `_race`): say goodbye and finish the task normally.
            logger.info("stream ended by server shutdown")
            await self._say_farewell(send)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            self._tracker.stream_closed(early=client_gone)

    async def _race(self, receive: Receive, send: Send) -> bool:
        """Stream until done or until the client disconnects; True when done."""
        async with asyncio.TaskGroup() as group:
            pump = group.create_task(self._pump(send))
            watch = group.create_task(_until_disconnect(receive))
            pump.add_done_callback(lambda _: watch.cancel())
            watch.add_done_callback(lambda _: pump.cancel())
        return not pump.cancelled() and pump.result()

    async def _pump(self, send: Send) -> bool:
        """Send the whole body; False when the client went away first."""
        try:
            await self._start(send)
            async with aclosing(self._body) as body:
                async for data in body:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except OSError:
            return False
        except Exception:
            # Headers are out: the best left to do is end the stream and log.
            logger.exception("stream body failed")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True

    async def _start(self, send: Send) -> None:
        self._started = True
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )

    async def _say_farewell(self, send: Send) -> None:
        try:
            if not self._started:
                await self._start(send)
            await send({"type": "http.response.body", "body": self._farewell, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
