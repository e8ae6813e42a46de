"""The runner's management port: liveness, readiness, Prometheus metrics.

The runner has no public API: this is its only HTTP server
(relay_core.httpserver.management_server). `/livez` and `/healthz` answer as
long as the process runs, whatever Redis and state do (`/healthz` with the
pool and the runs in flight); `/readyz` answers 503 with the reason while
either is unreachable, or while the runner drains.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relay_core.errors import ApiError
from relay_core.management import management_app, register_connection_metrics
from relay_core.redis import ping
from relay_runner.runtime import Runtime
from relay_runner.worker import Worker


async def readiness(rt: Runtime) -> dict[str, str]:
    """Raise a 503 ApiError naming what is not ready."""
    if rt.stopping.is_set():
        raise ApiError(503, "draining: the runner is shutting down")
    if not await ping(rt.redis):
        raise ApiError(503, "redis unreachable")
    if not await rt.state.ready():
        raise ApiError(503, "state service unreachable")
    return {"status": "ready"}


def create_app(rt: Runtime, worker: Worker) -> FastAPI:
    router = APIRouter(tags=["management"])

    @router.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "pool": rt.pool, "in_flight": worker.in_flight}

    @router.get("/readyz")
    async def readyz() -> dict[str, str]:
        return await readiness(rt)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    register_connection_metrics()
    return management_app(router, title="relay-runner (management)")
