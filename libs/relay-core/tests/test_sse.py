"""SSE encoding is pure: the fast path must produce sse-starlette's exact bytes."""

from __future__ import annotations

import asyncio
import json

from relay_core import events as ev
from relay_core import sse
from relay_core.events import Event
from relay_core.fanout import SubscriberTooSlow

SAMPLES = [
    Event("token", {"text": "héllo\nwörld ✓", "step": 1}, id="1700000000000-0"),
    Event(
        "tool_start",
        {"name": "calculator", "args": {"expr": "1+2"}, "call_id": "c1", "step": 0},
        id="1700000000001-12",
    ),
    ev.resync("events_expired", "/v1/conversations/c/messages"),  # synthesised: no id
    ev.done("succeeded", 0.0123),
]


def test_encode_matches_sse_starlette_byte_for_byte() -> None:
    for event in SAMPLES:
        assert sse.encode(event) == sse.to_message(event).encode()


def test_encoding_is_shared_per_event_object_not_confused_between_runs() -> None:
    """Two runs can store different events under the same id in the same ms."""
    a = Event("token", {"text": "a", "step": 0}, id="1700000000000-0")
    b = Event("token", {"text": "b", "step": 0}, id="1700000000000-0")
    assert sse.encode(a) is sse.encode(a)  # the second subscriber reuses the bytes
    assert b'"text":"a"' in sse.encode(a)
    assert b'"text":"b"' in sse.encode(b)


def test_encoded_message_is_one_event_with_json_data() -> None:
    raw = sse.encode(SAMPLES[0]).decode()
    assert raw.endswith("\r\n\r\n")
    lines = raw.strip().split("\r\n")
    assert lines[0] == "id: 1700000000000-0"
    assert lines[1] == "event: token"
    assert json.loads(lines[2].removeprefix("data: ")) == SAMPLES[0].data
    assert len(lines) == 3  # a newline in the text never splits the data line


def test_unknown_type_or_odd_id_falls_back_to_the_escaping_encoder() -> None:
    odd = Event("custom\nthing", {"a": 1}, id="1-0\r\nevent: done")
    assert sse.encode(odd) == sse.to_message(odd).encode()
    assert b"\nevent: done" not in sse.encode(odd)


class _Source:
    def __init__(self, batches: list[list[Event]], end: BaseException) -> None:
        self.batches = batches
        self.end = end
        self.closed = False

    async def next_batch(self, limit: int = 256) -> list[Event]:
        await asyncio.sleep(0)
        if self.batches:
            return self.batches.pop(0)
        raise self.end

    def close(self) -> None:
        self.closed = True


async def test_stream_writes_one_chunk_per_batch_and_closes_the_source() -> None:
    source = _Source([SAMPLES[:2], SAMPLES[2:]], StopAsyncIteration())
    chunks = [c async for c in sse.stream_events(source)]
    assert chunks == [
        sse.encode(SAMPLES[0]) + sse.encode(SAMPLES[1]),
        sse.encode(SAMPLES[2]) + sse.encode(SAMPLES[3]),
    ]
    assert source.closed


async def test_stream_ends_quietly_when_the_subscriber_was_dropped() -> None:
    source = _Source([SAMPLES[:1]], SubscriberTooSlow("behind"))
    assert len([c async for c in sse.stream_events(source)]) == 1
    assert source.closed


async def test_stream_closes_the_source_when_the_client_goes_away() -> None:
    source = _Source([SAMPLES[:1], SAMPLES[1:2]], StopAsyncIteration())
    gen = sse.stream_events(source)
    await gen.__anext__()
    await gen.aclose()  # what sse-starlette does on disconnect
    assert source.closed


def test_response_headers_and_keepalive() -> None:
    async def nothing():
        yield b""

    resp = sse.response(nothing(), keepalive_s=7.5)
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers["x-accel-buffering"] == "no"
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.ping_interval == 7.5
