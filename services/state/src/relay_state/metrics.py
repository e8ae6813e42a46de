"""Prometheus metrics of the state service (on the default registry, defined once).

Requests are labelled by route template (`/internal/v1/runs/{run_id}`), never
by raw path, so ids cannot explode the label space.

Why a pure ASGI middleware and not `@app.middleware("http")`: Starlette's
`BaseHTTPMiddleware` runs every request through a task group and memory
streams, a fixed cost per request that showed in profiles of a burst of runs
(every run makes several calls to state). This one only wraps `send` to see
the status, and reads the matched route from the scope once the app is done.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "relay_state_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "relay_state_request_duration_seconds", "HTTP request latency", ["method", "route"]
)
RUNS_CREATED = Counter("relay_state_runs_created_total", "Runs created", ["kind"])
REENQUEUED = Counter(
    "relay_state_reconciler_reenqueued_total",
    "Runs the reconciler put back on their queue (Redis lost them, or enqueue failed)",
)
POOL_SIZE = Gauge("relay_state_db_pool_connections", "Postgres connections open in the pool")
POOL_IDLE = Gauge("relay_state_db_pool_idle_connections", "Idle Postgres connections in the pool")


def route_template(scope: Mapping[str, Any]) -> str:
    """`/internal/v1/runs/{run_id}` for `/internal/v1/runs/run_ab12`.

    Rebuilt from the matched path parameters rather than read from the route
    object, whose shape for included routers changes between FastAPI versions.
    Requests that matched no route share one label.
    """
    if scope.get("endpoint") is None:
        return "unmatched"
    segments = str(scope.get("path", "")).split("/")
    for name, value in scope.get("path_params", {}).items():
        for i in range(len(segments) - 1, -1, -1):
            if segments[i] == str(value):
                segments[i] = "{" + name + "}"
                break
    return "/".join(segments)


class MetricsMiddleware:
    """Counts every HTTP request and times it to the end of its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # The router stored the endpoint and path parameters in this scope.
            route = route_template(scope)
            method = scope["method"]
            REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            LATENCY.labels(method=method, route=route).observe(time.perf_counter() - start)
