"""The state client's connections (aiohttp's pool, since issue 14 replaced the
hand-written `statehttp` transport): keep-alive reuse, its bound, and how its
failures map, against the real state process and against tiny real servers
that misbehave on purpose (silent, closing idle connections)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from relay_core.config import DEV_INTERNAL_TOKEN
from relay_core.state_client import StateClient, StateUnavailable
from relay_devstack.procs import free_port

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RUN_ID = "run_" + "0" * 32


class Counts:
    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.most_open = 0


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, Counts]]:
    """A real TCP server on a free port; yields its URL and its connection counts."""
    counts = Counts()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts.accepted += 1
        counts.open += 1
        counts.most_open = max(counts.most_open, counts.open)
        try:
            await handler(reader, writer)
        finally:
            counts.open -= 1
            writer.close()

    srv = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", counts
    finally:
        srv.close()


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")  # no bodies in these tests


async def keep_answering(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while True:
        try:
            await _read_request(reader)
        except asyncio.IncompleteReadError:
            return
        await asyncio.sleep(0.01)  # long enough for concurrent calls to overlap
        w.write(OK)
        await w.drain()


async def test_calls_against_the_real_state_process(state_url: str) -> None:
    client = StateClient(state_url, DEV_INTERNAL_TOKEN)
    try:
        for _ in range(5):
            assert await client.ready()
        assert all(await asyncio.gather(*(client.ready() for _ in range(30))))
    finally:
        await client.aclose()


async def test_sequential_calls_reuse_one_connection() -> None:
    async with server(keep_answering) as (url, counts):
        client = StateClient(url, DEV_INTERNAL_TOKEN)
        try:
            for _ in range(5):
                assert await client.ready()
        finally:
            await client.aclose()
        assert counts.accepted == 1


async def test_concurrent_calls_never_open_more_than_the_limit() -> None:
    async with server(keep_answering) as (url, counts):
        client = StateClient(url, DEV_INTERNAL_TOKEN, max_connections=3)
        try:
            assert all(await asyncio.gather(*(client.ready() for _ in range(30))))
        finally:
            await client.aclose()
        assert 1 <= counts.most_open <= 3


async def test_a_silent_server_is_unavailable_and_the_request_may_have_arrived() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await reader.read()  # never answers; returns when the client hangs up

    async with server(silent) as (url, _):
        client = StateClient(url, DEV_INTERNAL_TOKEN, timeout_s=0.3)
        try:
            with pytest.raises(StateUnavailable) as err:
                await client.get_run(RUN_ID)
            assert err.value.sent and err.value.status == 0
        finally:
            await client.aclose()


async def test_nobody_listening_is_unavailable_and_never_sent() -> None:
    client = StateClient(f"http://127.0.0.1:{free_port()}", DEV_INTERNAL_TOKEN, timeout_s=1.0)
    try:
        with pytest.raises(StateUnavailable) as err:
            await client.get_run(RUN_ID)
        assert not err.value.sent and err.value.status == 0
    finally:
        await client.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def one_answer_then_close(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        w.write(OK)  # keep-alive by default in HTTP/1.1...
        await w.drain()  # ...but the server closes it when it returns

    async with server(one_answer_then_close) as (url, counts):
        client = StateClient(url, DEV_INTERNAL_TOKEN)
        try:
            for _ in range(3):
                assert await client.ready()
                await asyncio.sleep(0.05)  # the close reaches the idle connection
        finally:
            await client.aclose()
        assert counts.accepted == 3


async def test_a_connection_idle_past_the_keepalive_expiry_is_not_reused() -> None:
    async with server(keep_answering) as (url, counts):
        client = StateClient(url, DEV_INTERNAL_TOKEN, keepalive_expiry_s=0.2)
        try:
            assert await client.ready()
            assert await client.ready()
            assert counts.accepted == 1
            await asyncio.sleep(0.5)  # aiohttp closes idle connections on a coarse timer
            assert await client.ready()
            assert counts.accepted == 2
        finally:
            await client.aclose()
