"""A lean HTTP/1.1 transport for the services' calls to state: `StateHttpTransport`.

`relay_core.state_client.StateClient` uses it for a plain-HTTP state URL.

Why not httpx's default transport: httpcore's pool re-examines every one of
its connections each time a request is queued or a response is closed (a
socket check per idle connection), and by a miscount closes idle connections
past its keep-alive limit, so a burst reconnects. Under a burst of 200 chats
that was about a fifth of the gateway's CPU, and half of a runner's (claim,
checkpoint, finish). Each service talks to one origin (state) over plain
HTTP/1.1 with small bodies, so the pool it needs is small:

- **LIFO idle connections.** The connection used last is reused first. One
  the server closed (uvicorn drops a connection idle for 5 s) is noticed by
  its protocol at once and dropped; none idle longer than
  `keepalive_expiry_s` (below uvicorn's 5 s) is reused, so a request is not
  written into a connection the server is closing.
- **Bounded.** At most `max_connections` requests in flight, each on its own
  connection; the others wait in order, up to the pool timeout.
- **Whole responses.** State answers small JSON documents: the response is
  read whole, parsed by httptools (uvicorn's C parser), and handed to httpx as
  bytes.
- **No connection in an unknown state.** A failure, a timeout or a
  cancellation during an exchange closes that connection.
- **Trace context.** With tracing on, the current span's W3C `traceparent`
  is added to every request (`relay_core.tracing.inject`); off, nothing is.
- **httpx's contract.** The request's `pool`, `connect` and `read` timeouts
  apply (`read` bounds the whole wait for the response), and failures raise
  httpx's exceptions (`PoolTimeout`, `ConnectTimeout`, `ConnectError`,
  `ReadTimeout`, `ReadError`, `RemoteProtocolError`), so `StateClient` maps
  them as it maps the default transport's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httptools
import httpx

from relay_core import tracing

# Below uvicorn's `timeout_keep_alive` (5 s): reuse only what the server keeps.
KEEPALIVE_EXPIRY_S = 4.0
Exchange = tuple[int, list[tuple[bytes, bytes]], bytes, bool]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, on_lost: Callable[[_Connection], None]) -> None:
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Exchange] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response from state: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(httpx.ReadError("state closed the connection before answering"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(
                (
                    self._parser.get_status_code(),
                    self._headers,
                    b"".join(self._body),
                    self._parser.should_keep_alive(),
                )
            )

    # the exchange

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    async def exchange(self, payload: bytes, timeout_s: float | None) -> Exchange:
        """Write one request and wait for its whole response."""
        if self.closed or self._transport is None:
            raise httpx.ReadError("state closed the connection")
        self._waiter = asyncio.get_running_loop().create_future()
        self._headers, self._body = [], []
        try:
            self._transport.write(payload)
            async with asyncio.timeout(timeout_s):
                return await self._waiter
        except TimeoutError as exc:
            raise httpx.ReadTimeout("no answer from state in time") from exc
        finally:
            self._waiter = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._transport is not None:
                self._transport.close()
        self._on_lost(self)


def _serialize(request: httpx.Request, body: bytes) -> bytes:
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    lines.extend(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw)
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)


class StateHttpTransport(httpx.AsyncBaseTransport):
    def __init__(
        self, *, max_connections: int = 100, keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S
    ) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._keepalive_expiry_s = keepalive_expiry_s
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open now (in use or idle)."""
        return len(self._open)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        if tracing.ENABLED:
            tracing.inject(request.headers)
        payload = _serialize(request, await request.aread())
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no free connection to state in time") from exc
        try:
            conn = await self._connection(request.url, timeouts.get("connect"))
            try:
                status, headers, body, keep_alive = await conn.exchange(
                    payload, timeouts.get("read")
                )
            except BaseException:
                conn.close()
                raise
            self._put_back(conn, keep_alive)
        finally:
            self._slots.release()
        return httpx.Response(
            status,
            headers=headers,
            content=body,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _connection(self, url: httpx.URL, timeout_s: float | None) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive_expiry_s:
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._forget), url.host, url.port or 80
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("state did not accept a connection in time") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to state: {exc}") from exc
        self._open.add(conn)
        return conn

    def _put_back(self, conn: _Connection, keep_alive: bool) -> None:
        if keep_alive and not conn.closed and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
