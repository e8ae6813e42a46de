"""Prometheus metrics of the state service (on the default registry, defined once).

Requests are labelled by route template (`/internal/v1/runs/{run_id}`), never
by raw path, so ids cannot explode the label space.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import Counter, Gauge, Histogram

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


def _route_template(request: Request) -> str:
    """`/internal/v1/runs/{run_id}` for `/internal/v1/runs/run_ab12`.

    Rebuilt from the matched path parameters rather than read from the route
    object, whose shape for included routers changes between FastAPI versions.
    Requests that matched no route share one label.
    """
    if request.scope.get("endpoint") is None:
        return "unmatched"
    segments = str(request.scope.get("path", "")).split("/")
    for name, value in request.scope.get("path_params", {}).items():
        for i in range(len(segments) - 1, -1, -1):
            if segments[i] == str(value):
                segments[i] = "{" + name + "}"
                break
    return "/".join(segments)


async def record_request(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = _route_template(request)
        REQUESTS.labels(method=request.method, route=route, status=str(status)).inc()
        LATENCY.labels(method=request.method, route=route).observe(time.perf_counter() - start)
