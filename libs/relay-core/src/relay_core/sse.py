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
- The fan-out hub hands the same `Event` object to every subscriber of a run,
  so `encode` remembers the bytes of recent events by identity: one JSON
  encoding per event, not per subscriber.
- `stream_events` writes whatever a subscription has ready as ONE chunk: under
  load a subscriber that fell a few events behind catches up in one socket
  write instead of one per event, while an idle one still gets each event
  the moment it is stored. It ends the stream after the terminal event, or
  when the subscriber was dropped as too slow (the client resumes with
  `Last-Event-ID`), and always closes the subscription, so a client that
  disconnects is detached at once.
- `response` sets `Cache-Control: no-cache` and `X-Accel-Buffering: no`
  (proxies must neither cache nor buffer the stream) and sends a keep-alive
  comment every `keepalive_s` (sse-starlette's ping).
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
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Protocol

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Message, Receive, Scope, Send

from relay_core.events import EVENT_TYPES, Event
from relay_core.fanout import SubscriberTooSlow

__all__ = ["HEADERS", "SEP", "encode", "response", "stream_events", "to_message"]

log = logging.getLogger(__name__)

SEP = "\r\n"
SEND_TIMEOUT_S = 30.0
HEADERS: Mapping[str, str] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventSource(Protocol):
    """What `stream_events` reads: a `relay_core.fanout.Subscription`."""

    async def next_batch(self, limit: int = ...) -> list[Event]: ...
    def close(self) -> None: ...


def _data(event: Event) -> str:
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


async def stream_events(source: EventSource, *, max_batch: int = 256) -> AsyncIterator[bytes]:
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
            yield encode(batch[0]) if len(batch) == 1 else b"".join(map(encode, batch))
    finally:
        source.close()


def _keepalive() -> ServerSentEvent:
    # a constant comment: sse-starlette's default formats the time for each one
    return ServerSentEvent(comment="keep-alive", sep=SEP)


class _EventSourceResponse(EventSourceResponse):
    """sse-starlette's response, cheaper per message; a client that stopped
    reading is closed quietly.

    sse-starlette wraps every send in an anyio cancel scope for `send_timeout`
    (~3 us, ~6% of the service's CPU at 10,000 messages/s). Here only the
    keep-alive comments carry the timeout: a client that stops reading blocks
    the data sends and then the next keep-alive, which times out and ends the
    response, so a dead connection still goes away (within keepalive_s +
    send_timeout_s).
    """

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if message.get("body", b"")[:1] == b":":  # a keep-alive comment
            await super()._send_with_timeout(send, message)
        else:
            await send(message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        timeout_s = self.send_timeout

        async def send_last_bounded(message: Message) -> None:
            # sse-starlette writes the final chunk with no timeout at all: for a
            # client that stopped reading (say, one the hub dropped) it would
            # wait forever and hold the connection.
            if timeout_s is not None and message.get("more_body") is False:
                async with asyncio.timeout(timeout_s):
                    await send(message)
            else:
                await send(message)

        try:
            await super().__call__(scope, receive, send_last_bounded)
        except (SendTimeoutError, TimeoutError):
            log.info("closed a stream whose client stopped reading for %ss", timeout_s)


def response(
    content: AsyncIterable[bytes | ServerSentEvent],
    *,
    keepalive_s: float = 15.0,
    headers: Mapping[str, str] | None = None,
    on_close: Callable[[], None] | None = None,
    shutdown_event: anyio.Event | None = None,
    shutdown_grace_s: float = 2.0,
    send_timeout_s: float = SEND_TIMEOUT_S,
) -> EventSourceResponse:
    """The SSE response every Relay stream uses.

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
    return _EventSourceResponse(
        content,
        ping=keepalive_s,
        ping_message_factory=_keepalive,
        sep=SEP,
        headers={**HEADERS, **(headers or {})},
        background=background,
        shutdown_event=shutdown_event,
        shutdown_grace_period=shutdown_grace_s if shutdown_event is not None else 0,
        send_timeout=send_timeout_s,
    )
