"""Connection hygiene for uvicorn's httptools protocol: deadlines and a connection cap.

A hostile probe held 2,000 connections forever on the gateway and the events
service (a request line and then one header every 5 s; nothing at all; a
POST body trickling one byte every 5 s), and 20,000 idle connections used up
the gateway's file descriptors until `/healthz` failed. uvicorn has an idle
keep-alive timeout (after a response) and `limit_concurrency` (a 503 once the
request is read), but no deadline on reading a request and nothing that
refuses a connection before it costs anything. So `GuardedProtocol`
subclasses uvicorn's `HttpToolsProtocol` (the fast path every service runs:
uvloop and the C parser) and adds, per connection:

- **A header deadline** (`header_timeout_s`): the request line and headers
  must be complete within it, measured from the connection's opening for its
  first request and from the first byte of each later request on a
  kept-alive connection. A connection that sends nothing is closed by it
  too. On expiry the server answers `408` (when nothing else is being
  answered on the connection) and closes.
- **A body deadline with a minimum rate** (Apache's mod_reqtimeout
  `body=N,MinRate=R`): a request that declares a body must deliver it within
  `body_timeout_s`, extended by one second for every `body_min_rate` bytes
  received, so a large upload at a sane speed passes and a trickle does not.
  Time the server itself stopped reading (uvicorn's flow control, an app not
  consuming its body) is not held against the client.
- **The idle keep-alive timeout** is uvicorn's own (`keepalive_s`).
- **A cap on open connections** (`max_connections`, per server, so per
  process): a connection past it is closed at once, before a byte is read,
  and counted. The default keeps a tenth of the process's file descriptor
  limit (at least 256) for what the process itself opens: Redis, state,
  Postgres, the management port's own connections.

Once a request is read, nothing here applies to the response: an SSE stream
lives as long as its client reads it, bounded by the services' own caps (the
events service's per-key streams) and its send timeout.

Counters live in a `ConnectionStats` per server name (`public`,
`management`) and are exported by `ConnectionCollector`, which each service
registers in its Prometheus registry.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "ConnectionCollector",
    "ConnectionLimits",
    "ConnectionStats",
    "GuardedProtocol",
    "default_max_connections",
    "guarded_protocol",
    "stats_of",
]

_TIMEOUT_BODY = (
    b'{"error": {"type": "request_timeout", "message": "the request was not sent in time"}}'
)
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    + b"content-length: %d\r\n\r\n" % len(_TIMEOUT_BODY)
    + _TIMEOUT_BODY
)


def default_max_connections() -> int:
    """The process's open-file limit less a reserve for its own connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65_536
    reserve = max(256, soft // 10)
    return max(64, soft - reserve)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    body_min_rate: int = 500  # bytes per second
    keepalive_s: int = 5
    max_connections: int | None = None  # None: no cap


@dataclass
class ConnectionStats:
    """Counters of one server (plain integers on the hot path; read at scrape time)."""

    server: str
    open: int = 0
    accepted: int = 0
    refused: int = 0
    header_timeouts: int = 0
    body_timeouts: int = 0
    idle_closed: int = 0


_STATS: dict[str, ConnectionStats] = {}


def stats_of(server: str) -> ConnectionStats:
    """The process-wide counters of the server named `server` (created on first use)."""
    found = _STATS.get(server)
    if found is None:
        found = _STATS[server] = ConnectionStats(server)
    return found


class ConnectionCollector(Collector):
    """`relay_http_*` metrics of every server of this process."""

    def collect(self) -> Iterator[Metric]:
        open_ = GaugeMetricFamily(
            "relay_http_connections_open", "HTTP connections open", labels=["server"]
        )
        accepted = CounterMetricFamily(
            "relay_http_connections_accepted", "HTTP connections accepted", labels=["server"]
        )
        refused = CounterMetricFamily(
            "relay_http_connections_refused",
            "connections closed at once because the server was at its connection cap",
            labels=["server"],
        )
        closed = CounterMetricFamily(
            "relay_http_connections_timed_out",
            "connections closed by a deadline: header (request not read in time), "
            "body (body below the minimum rate), idle (keep-alive)",
            labels=["server", "deadline"],
        )
        for s in list(_STATS.values()):
            open_.add_metric([s.server], s.open)
            accepted.add_metric([s.server], s.accepted)
            refused.add_metric([s.server], s.refused)
            closed.add_metric([s.server, "header"], s.header_timeouts)
            closed.add_metric([s.server, "body"], s.body_timeouts)
            closed.add_metric([s.server, "idle"], s.idle_closed)
        yield from (open_, accepted, refused, closed)


def _declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines and a cap (see the module's docstring).
    Subclassed per server by `guarded_protocol`, which sets the class attributes."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    stats: ClassVar[ConnectionStats] = ConnectionStats("unnamed")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._body_started = 0.0
        self._body_bytes = 0

    # connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        cap = self.limits.max_connections
        if cap is not None and len(self.connections) >= cap:
            self._refused = True
            self.transport = transport
            self.stats.refused += 1
            transport.abort()  # before a byte is read: the descriptor is free at once
            return
        super().connection_made(transport)
        self.stats.accepted += 1
        self.stats.open += 1
        self._arm(self.limits.header_timeout_s, self._header_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused:
            return
        self.stats.open -= 1
        super().connection_lost(exc)

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self.stats.idle_closed += 1
        super().timeout_keep_alive_handler()

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # a later request on a kept-alive connection
            self._arm(self.limits.header_timeout_s, self._header_expired)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if _declares_body(self.headers):
            self._body_started = self.loop.time()
            self._body_bytes = 0
            self._arm(self.limits.body_timeout_s, self._body_check)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # deadlines

    def _arm(self, delay_s: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        self.stats.header_timeouts += 1
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()

    def _body_check(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # the server stopped reading, not the client
            self._body_started = now - self._body_bytes / self.limits.body_min_rate
            self._arm(self.limits.body_timeout_s, self._body_check)
            return
        allowed = self.limits.body_timeout_s + self._body_bytes / self.limits.body_min_rate
        elapsed = now - self._body_started
        if elapsed < allowed:
            self._arm(allowed - elapsed, self._body_check)
            return
        self.stats.body_timeouts += 1
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits, server: str) -> type[GuardedProtocol]:
    """A `GuardedProtocol` class for one server: its limits and its counters."""
    attrs = {"limits": limits, "stats": stats_of(server)}
    return type(f"GuardedProtocol_{server}", (GuardedProtocol,), attrs)
