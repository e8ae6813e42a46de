"""Run events as server-sent events: the encoding and the one response shape.

Used by the events service (`GET /v1/runs/{id}/events`) and the gateway's
interactive stream, so both speak exactly the same SSE.

Design decisions, and why:

- Every message is `id` (the stream entry id, omitted for a synthesised
  event), `event` (the type) and one `data` line of compact JSON (DESIGN,
  "Events"). `to_message` builds sse-starlette's `ServerSentEvent`; `encode`
  produces the very same bytes without its per-call StringIO and regexes
  (the JSON is ASCII-only and the type is a known name, so nothing needs
  escaping; anything else falls back to `to_message`). The equality is tested.
  A stored event's data line is its data as stored (`Event.raw`, the writer's
  compact JSON), not encoded again.
- The fan-out hub hands the same `Event` object to every subscriber of a run,
  so `encode` remembers the bytes of recent events by identity: one JSON
  encoding per event, not per subscriber.
- `response(subscription)` writes whatever the subscription has ready as ONE
  chunk: under load a subscriber that fell a few events behind catches up in
  one socket write instead of one per event, while an idle one still gets
  each event the moment it is stored. It ends the stream after the terminal
  event, or when the subscriber was dropped as too slow (the client resumes
  with `Last-Event-ID`), and always closes the subscription, so a client that
  disconnects is detached at once. `stream_events` is the same loop as an
  async generator, for anything else that wants the chunks.
- `response` sets `Cache-Control: no-cache` and `X-Accel-Buffering: no`
  (proxies must neither cache nor buffer the stream) and sends a keep-alive
  comment on a stream that has sent nothing for `keepalive_s`.
- The hot path is lean on purpose (`_EventSourceResponse`): at 10,000 streams
  on one process, sse-starlette's per-message cancel scope, its async
  generator hop and its fixed-period pings were ~15% of the events service's
  samples in a profile (bench/fanout.py, http at 21,000 events/s); the
  socket write itself is another ~30% and cannot be shared.
- A slow client is dropped by the hub (its buffer overflows) and its stream
  ends; one that stops reading altogether blocks only its own writes, and a
  keep-alive stuck for `send_timeout_s` closes the connection.
- On shutdown sse-starlette cancels open streams, which cuts them mid-body
  (uvicorn logs "returned without completing response" for each). With a
  `shutdown_event` the source is ended first, so every stream finishes with a
  proper last chunk and the client reconnects with its last id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Mapping
from typing import Protocol, TypeGuard, cast, runtime_checkable

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Receive, Scope, Send

from relay_core.events import EVENT_TYPES, Event
from relay_core.fanout import SubscriberTooSlow

__all__ = ["HEADERS", "SEP", "chunk", "encode", "response", "stream_events", "to_message"]

log = logging.getLogger(__name__)

SEP = "\r\n"
SEND_TIMEOUT_S = 30.0
HEADERS: Mapping[str, str] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@runtime_checkable
class EventSource(Protocol):
    """What `stream_events` reads: a `relay_core.fanout.Subscription`."""

    async def next_batch(self, limit: int = ...) -> list[Event]: ...
    def close(self) -> None: ...


def _is_source(content: object) -> TypeGuard[EventSource]:
    """`isinstance(content, EventSource)`, remembered by type: a runtime protocol
    check walks the protocol's members each time (a visible share of a stream's
    start in the gateway's profile), and a type's methods do not change."""
    kind = type(content)
    found = _SOURCE_TYPES.get(kind)
    if found is None:
        found = _SOURCE_TYPES[kind] = issubclass(kind, EventSource)
    return found


_SOURCE_TYPES: dict[type, bool] = {}


def _data(event: Event) -> str:
    if event.raw is not None:  # as stored: the same compact JSON (`events.encode_fields`)
        return event.raw
    return json.dumps(event.data, separators=(",", ":"))


def to_message(event: Event) -> ServerSentEvent:
    return ServerSentEvent(data=_data(event), event=event.type, id=event.id, sep=SEP)


def encode(event: Event) -> bytes:
    """The SSE bytes of one event (identical to `to_message(event).encode()`).

    A stored event is one object shared by every subscriber of its run, so
    its bytes are kept for the next subscriber (a small cache keyed by object
    identity, holding the object so the identity cannot be reused).
    """
    hit = _cache.get(id(event))
    if hit is not None and hit[0] is event:
        return hit[1]
    if event.type not in EVENT_TYPES or (event.id is not None and not _plain_id(event.id)):
        raw = to_message(event).encode()
    else:
        head = f"id: {event.id}{SEP}" if event.id is not None else ""
        raw = f"{head}event: {event.type}{SEP}data: {_data(event)}{SEP}{SEP}".encode()
    if event.id is not None:
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[id(event)] = (event, raw)
    return raw


_CACHE_SIZE = 4096
_cache: dict[int, tuple[Event, bytes]] = {}


def _plain_id(value: str) -> bool:
    return "\n" not in value and "\r" not in value


def chunk(batch: list[Event]) -> bytes:
    """One write for everything a subscriber has ready."""
    return encode(batch[0]) if len(batch) == 1 else b"".join(map(encode, batch))


async def stream_events(
    source: EventSource, *, max_batch: int = 256
) -> AsyncGenerator[bytes, None]:
    """SSE chunks of a subscription until its terminal event; closes it on exit."""
    try:
        while True:
            try:
                batch = await source.next_batch(max_batch)
            except StopAsyncIteration:
                return
            except SubscriberTooSlow as exc:
                log.info("ending a stream: %s", exc)
                return
            yield chunk(batch)
    finally:
        source.close()


_KEEPALIVE = b": keep-alive" + SEP.encode() + SEP.encode()


class _EventSourceResponse(EventSourceResponse):
    """sse-starlette's response with a leaner hot path (see the module docstring).

    sse-starlette keeps what it is good at: the task group, the client's
    `http.disconnect`, the server's shutdown, the HEAD answer. Two of its loops
    are replaced, because at ten thousand streams on one process they are
    most of the CPU:

    - `_stream_response`: when the content is an `EventSource`, it reads
      batches from it directly and sends each as one chunk with no per-send
      wrapper (sse-starlette wraps every send in an anyio cancel scope for
      `send_timeout`, ~6% of the service's CPU at 10,000 messages/s, plus an
      async generator hop per message). A client that stops reading blocks
      only its own writes; the keep-alive, which keeps the timeout, then
      closes it (within keepalive_s + send_timeout_s). The final chunk is
      bounded too: sse-starlette writes it with no timeout, which would hold
      the connection of a client that stopped reading forever.
    - `_ping`: a keep-alive comment only on a stream that sent nothing for
      `keepalive_s` (a proxy's idle timeout is all it is for); sse-starlette
      pings every stream on a fixed period, busy or not (10,000 streams at
      15 s is ~670 sends/s for nothing).
    """

    _source: EventSource | None = None
    _max_batch = 256
    _last_sent = 0.0

    async def _stream_response(self, send: Send) -> None:
        source = self._source
        if source is None:
            await super()._stream_response(send)
            return
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        self._last_sent = time.monotonic()
        try:
            while True:
                try:
                    batch = await source.next_batch(self._max_batch)
                except StopAsyncIteration:
                    break
                except SubscriberTooSlow as exc:
                    log.info("ending a stream: %s", exc)
                    break
                await send({"type": "http.response.body", "body": chunk(batch), "more_body": True})
                self._last_sent = time.monotonic()
        finally:
            source.close()
        async with self._send_lock:
            self.active = False
            async with asyncio.timeout(self.send_timeout):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _ping(self, send: Send) -> None:
        interval = self.ping_interval
        while self.active:
            idle_s = time.monotonic() - self._last_sent
            if idle_s < interval:
                await anyio.sleep(interval - idle_s)
                continue
            async with self._send_lock:
                if self.active:
                    message = {"type": "http.response.body", "body": _KEEPALIVE, "more_body": True}
                    await self._send_with_timeout(send, message)
                    self._last_sent = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (SendTimeoutError, TimeoutError):
            log.info("closed a stream whose client stopped reading for %ss", self.send_timeout)


def response(
    content: EventSource | AsyncIterable[bytes | ServerSentEvent],
    *,
    keepalive_s: float = 15.0,
    headers: Mapping[str, str] | None = None,
    on_close: Callable[[], None] | None = None,
    shutdown_event: anyio.Event | None = None,
    shutdown_grace_s: float = 2.0,
    send_timeout_s: float = SEND_TIMEOUT_S,
) -> EventSourceResponse:
    """The SSE response every Relay stream uses.

    `content` is an `EventSource` (a subscription: the fast path, see
    `_EventSourceResponse`) or any async iterable of chunks.
    `on_close` runs when the response is over, even if the stream never
    started (a generator that was never iterated never runs its `finally`).
    `shutdown_event` (one per process, shared by every response) is set when
    the server begins to shut down; whoever owns the streams' source ends them
    then (`EventHub.drain`), and each response gets `shutdown_grace_s` to
    finish cleanly before sse-starlette cuts it. A keep-alive that cannot be
    written for `send_timeout_s` (the client stopped reading and the socket
    buffers are full) closes the stream.
    """
    background = None
    if on_close is not None:
        close = on_close

        async def _close() -> None:  # async: a sync task would run in a thread
            close()

        background = BackgroundTask(_close)
    source: EventSource | None = None
    body: AsyncIterable[bytes | ServerSentEvent]
    if _is_source(content):
        source, body = content, stream_events(content)
    else:  # not a source, so the iterable of chunks
        body = cast("AsyncIterable[bytes | ServerSentEvent]", content)
    resp = _EventSourceResponse(
        body,
        ping=keepalive_s,
        sep=SEP,
        headers={**HEADERS, **(headers or {})},
        background=background,
        shutdown_event=shutdown_event,
        shutdown_grace_period=shutdown_grace_s if shutdown_event is not None else 0,
        send_timeout=send_timeout_s,
    )
    resp._source = source
    return resp
