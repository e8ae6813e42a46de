"""Prometheus metrics of the gateway, and the ASGI middleware that records them.

Why a registry per app and not the global one: tests build several apps in
one process, and the global registry refuses a metric registered twice.

Why a pure ASGI middleware (not `BaseHTTPMiddleware`): it must see a streamed
response to its end and must not sit between the response and the client's
disconnect, which the interactive stream relies on.

Requests are labelled by route template (`/v1/runs/{run_id}`), never by raw
path, so the label set stays bounded whatever ids clients send.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay_core import tracing
from relay_core.connguard import ConnectionCollector


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        tracing.register_metrics(self.registry)
        # The HTTP server's connections: open, refused at the cap, timed out.
        self.registry.register(ConnectionCollector())
        self.requests = Counter(
            "relay_gateway_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "relay_gateway_request_duration_seconds",
            "HTTP request latency (to the end of the response body)",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "relay_gateway_requests_in_flight",
            "HTTP requests being served (open streams included)",
            registry=self.registry,
        )
        self.streams_open = Gauge(
            "relay_gateway_streams_open",
            "interactive event streams open on this replica",
            registry=self.registry,
        )
        self.kill_switch = Gauge(
            "relay_gateway_kill_switch",
            "1 when the kill switch is on, 0 when off, -1 when Redis could not be read",
            registry=self.registry,
        )
        self.kill_switch.set(-1)
        self.rate_limited = Counter(
            "relay_gateway_rate_limited",
            "requests refused by the per-key rate limit",
            registry=self.registry,
        )
        self.admissions_refused = Counter(
            "relay_gateway_admissions_refused",
            "runs refused at submit: interactive_capacity, concurrent_runs, conversation_busy",
            ["reason"],
            registry=self.registry,
        )
        self.admission_wait = Histogram(
            "relay_gateway_interactive_admission_wait_seconds",
            "time an interactive run waited for a runner slot (admitted or not)",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.interactive_in_flight = Gauge(
            "relay_gateway_interactive_in_flight",
            "interactive runs admitted and not finished, all replicas (-1: Redis unread)",
            registry=self.registry,
        )
        self.interactive_in_flight.set(-1)
        self.interactive_capacity = Gauge(
            "relay_gateway_interactive_capacity",
            "runner slots the live interactive runners advertise (-1: Redis unread)",
            registry=self.registry,
        )
        self.interactive_capacity.set(-1)
        self.runs_submitted = Counter(
            "relay_gateway_runs_submitted",
            "runs accepted, by kind and whether it was an idempotent replay",
            ["kind", "replayed"],
            registry=self.registry,
        )

        # Plain numbers for /healthz (the gauges hold the same values).
        self.requests_now = 0
        self.streams_now = 0

    def request_started(self) -> None:
        self.requests_now += 1
        self.in_flight.inc()

    def request_finished(self) -> None:
        self.requests_now -= 1
        self.in_flight.dec()

    def stream_opened(self) -> None:
        self.streams_now += 1
        self.streams_open.inc()

    def stream_closed(self) -> None:
        self.streams_now -= 1
        self.streams_open.dec()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.request_started()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.request_finished()
            method, route = scope["method"], _route_of(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
