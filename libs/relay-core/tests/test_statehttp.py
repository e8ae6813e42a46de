"""relay_core's transport to state (`statehttp`): keep-alive reuse, its bound,
and httpx's failures, against the real state process and against tiny real
servers that misbehave on purpose (silent, closing idle connections)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from relay_core.config import DEV_INTERNAL_TOKEN
from relay_core.state_client import StateClient, StateUnavailable
from relay_core.statehttp import StateHttpTransport
from relay_devstack.procs import free_port

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A real TCP server on a free port; yields its URL and a count of connections."""
    accepted = [0]

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    srv = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        srv.close()


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")  # no bodies in these tests


async def test_sequential_calls_reuse_one_connection(state_url: str) -> None:
    transport = StateHttpTransport()
    client = StateClient(state_url, DEV_INTERNAL_TOKEN, transport=transport)
    try:
        for _ in range(5):
            assert await client.ready()
        assert transport.connections == 1
    finally:
        await client.aclose()
    assert transport.connections == 0


async def test_concurrent_calls_never_open_more_than_the_limit(state_url: str) -> None:
    transport = StateHttpTransport(max_connections=3)
    client = StateClient(state_url, DEV_INTERNAL_TOKEN, transport=transport)
    try:
        assert all(await asyncio.gather(*(client.ready() for _ in range(30))))
        assert 1 <= transport.connections <= 3
    finally:
        await client.aclose()


async def test_a_silent_server_is_a_read_timeout_and_the_connection_is_dropped() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await reader.read()  # never answers; returns when the client hangs up

    async with server(silent) as (url, _):
        transport = StateHttpTransport()
        async with httpx.AsyncClient(transport=transport, timeout=0.3) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(f"{url}/anything")
            assert transport.connections == 0


async def test_nobody_listening_is_a_connect_error_that_state_client_maps() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with httpx.AsyncClient(transport=StateHttpTransport(), timeout=1.0) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{url}/anything")
    client = StateClient(url, DEV_INTERNAL_TOKEN, transport=StateHttpTransport())
    try:
        with pytest.raises(StateUnavailable) as err:
            await client.get_run("run_" + "0" * 32)
        assert isinstance(err.value.__cause__, httpx.ConnectError)
    finally:
        await client.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def one_answer_then_close(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        w.write(OK)  # keep-alive by default in HTTP/1.1...
        await w.drain()  # ...but the server closes it when it returns

    async with server(one_answer_then_close) as (url, accepted):
        transport = StateHttpTransport()
        async with httpx.AsyncClient(transport=transport, timeout=2.0) as http:
            for _ in range(3):
                assert (await http.get(f"{url}/x")).json() == {}
                await asyncio.sleep(0.05)  # the close reaches the idle connection
        assert accepted[0] == 3


async def test_a_connection_idle_past_the_keepalive_expiry_is_not_reused() -> None:
    async def keep_answering(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            try:
                await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            w.write(OK)
            await w.drain()

    async with server(keep_answering) as (url, accepted):
        transport = StateHttpTransport(keepalive_expiry_s=0.2)
        async with httpx.AsyncClient(transport=transport, timeout=2.0) as http:
            await http.get(f"{url}/x")
            await http.get(f"{url}/x")
            assert accepted[0] == 1
            await asyncio.sleep(0.3)
            await http.get(f"{url}/x")
            assert accepted[0] == 2
