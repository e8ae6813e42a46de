"""The SSE fast path (`relay_core.sse._EventSourceResponse`) is what serves a stream.

`relay_core.sse` replaces two private methods of sse-starlette's
`EventSourceResponse`, `_stream_response(send)` and `_ping(send)`, and calls
its `_send_with_timeout`. A release of sse-starlette may rename or re-sign
private methods, and the override then silently stops being called: streams
keep working through sse-starlette's own loop, but the CPU the events service
is sized on (bench/fanout.py) is gone. These tests fail when that happens:

- the names exist upstream with the parameters ours assume;
- a stream served by uvicorn over a socket, from a fan-out subscription on a
  real Redis, is read by our `_stream_response` (the subscription's
  `next_batch` is called from it, not through sse-starlette's generator loop),
  and an idle stream's keep-alive is ours (`: keep-alive`), not
  sse-starlette's `: ping - <time>`;
- a HEAD is answered at once without reading the subscription (what
  sse-starlette does from 3.6, the lower bound in relay-core's pyproject).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from relay_core import events as ev
from relay_core import keys, sse
from relay_core.events import Event
from relay_core.fanout import EventHub, Subscription
from relay_core.redis import create_redis
from relay_devstack.procs import free_port

DEADLINE_S = 10.0
FAST_PATH = f"{sse._EventSourceResponse.__name__}._stream_response"  # our override


@dataclass
class Run:
    status: str = "running"
    conversation_id: str = "conv_fastpath"
    cost_usd: float = 0.0


class Recorded:
    """A real subscription that notes which function asks it for each batch."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.callers: list[str] = []
        self.closed = False

    async def next_batch(self, limit: int = 256) -> list[Event]:
        self.callers.append(sys._getframe(1).f_code.co_qualname)
        return await self.sub.next_batch(limit)

    def close(self) -> None:
        self.closed = True
        self.sub.close()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest keeps its own signal handlers


@dataclass
class Served:
    url: str
    streams: list[Recorded]


@pytest.fixture
async def served(redis_url: str) -> AsyncIterator[Served]:
    """`GET /runs/{run_id}/events?keepalive_s=`: `relay_core.sse.response` over a
    real subscription, as the events service serves it, under a real uvicorn."""
    hub = EventHub(redis_url)
    await hub.start()
    streams: list[Recorded] = []

    async def run_events(request: Request) -> EventSourceResponse:
        sub = await hub.subscribe(request.path_params["run_id"], run=Run())
        recorded = Recorded(sub)
        streams.append(recorded)
        keepalive_s = float(request.query_params.get("keepalive_s", "15"))
        return sse.response(recorded, keepalive_s=keepalive_s, on_close=recorded.close)

    app = Starlette(routes=[Route("/runs/{run_id}/events", run_events, methods=["GET"])])
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + DEADLINE_S
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert not task.done(), "uvicorn stopped while starting"
        await asyncio.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", streams)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE_S)
        await hub.stop()


@pytest.fixture
async def rc(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


async def xadd(rc: Redis, run_id: str, event: Event) -> None:
    fields: dict[Any, Any] = ev.encode_fields(event)  # as redis-py's xadd takes them
    await rc.xadd(keys.events(run_id), fields)


async def read_until(chunks: AsyncIterator[bytes], body: bytearray, marker: bytes) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while marker not in body:
            body.extend(await anext(chunks))


@pytest.mark.parametrize("name", ["_stream_response", "_ping"])
def test_the_overridden_methods_exist_upstream_with_our_parameters(name: str) -> None:
    upstream = getattr(EventSourceResponse, name, None)
    ours = getattr(sse._EventSourceResponse, name)
    assert upstream is not None, f"sse-starlette no longer has EventSourceResponse.{name}"
    assert ours is not upstream, f"relay_core.sse no longer overrides {name}"
    assert inspect.iscoroutinefunction(upstream)
    assert list(inspect.signature(upstream).parameters) == list(inspect.signature(ours).parameters)


def test_the_upstream_members_the_fast_path_uses_are_there() -> None:
    send_with_timeout = EventSourceResponse._send_with_timeout
    assert list(inspect.signature(send_with_timeout).parameters) == ["self", "send", "message"]

    async def nothing() -> AsyncIterator[bytes]:
        yield b""

    resp = sse.response(nothing(), keepalive_s=3.0, send_timeout_s=4.0)
    assert isinstance(resp, sse._EventSourceResponse)
    assert resp.ping_interval == 3.0 and resp.send_timeout == 4.0
    assert resp.active is True
    for name in ("_send_lock", "raw_headers", "status_code", "client_close_handler_callable"):
        assert hasattr(resp, name), name


async def test_a_served_stream_is_read_by_the_fast_path(served: Served, rc: Redis) -> None:
    run_id = f"run_{uuid.uuid4().hex}"
    sent = [ev.start(run_id, 1), ev.token("hello", 0), ev.token(" world", 0)]
    for event in sent:
        await xadd(rc, run_id, event)
    body = bytearray()
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        url = f"{served.url}/runs/{run_id}/events"
        async with client.stream("GET", url) as resp:
            assert resp.status_code == 200
            chunks = resp.aiter_bytes()
            await read_until(chunks, body, b"event: token")
            await xadd(rc, run_id, ev.done("succeeded", 0.0))
            async with asyncio.timeout(DEADLINE_S):
                async for chunk in chunks:  # the server ends the stream after `done`
                    body.extend(chunk)
    text = body.decode()
    assert [line for line in text.split("\r\n") if line.startswith("event: ")] == [
        "event: start",
        "event: token",
        "event: token",
        "event: done",
    ]
    (stream,) = served.streams
    assert stream.callers, "the subscription was never read"
    assert set(stream.callers) == {FAST_PATH}, (
        f"batches were read by {sorted(set(stream.callers))}, not {FAST_PATH}: "
        "sse-starlette no longer calls the overridden _stream_response"
    )


async def test_an_idle_stream_gets_our_keepalive_not_sse_starlettes_ping(
    served: Served, rc: Redis
) -> None:
    run_id = f"run_{uuid.uuid4().hex}"
    await xadd(rc, run_id, ev.start(run_id, 1))
    body = bytearray()
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        url = f"{served.url}/runs/{run_id}/events?keepalive_s=0.2"
        async with client.stream("GET", url) as resp:
            chunks = resp.aiter_bytes()
            await read_until(chunks, body, b": keep-alive\r\n\r\n")
            await xadd(rc, run_id, ev.done("succeeded", 0.0))
            async with asyncio.timeout(DEADLINE_S):
                async for chunk in chunks:
                    body.extend(chunk)
    assert b": ping" not in body
    assert b"event: done\r\n" in body


async def test_head_answers_at_once_without_reading_the_stream(served: Served) -> None:
    run_id = f"run_{uuid.uuid4().hex}"  # no event yet: a GET would wait for one
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        resp = await client.head(f"{served.url}/runs/{run_id}/events")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["x-accel-buffering"] == "no"
    (stream,) = served.streams
    assert stream.callers == []
    deadline = time.monotonic() + DEADLINE_S
    while not stream.closed:  # the response's background closes the subscription
        assert time.monotonic() < deadline, "the subscription of a HEAD was never closed"
        await asyncio.sleep(0.01)
