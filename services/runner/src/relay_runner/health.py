"""The runner's small HTTP face: liveness, readiness, Prometheus metrics.

`/healthz` answers as long as the process runs, whatever Redis and state do;
`/readyz` answers 503 with the reason while either is unreachable, or while
the runner drains.
"""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relay_core import errors, tracing
from relay_core.errors import ApiError
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
    app = FastAPI(
        title="relay-runner",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=tracing.fastapi_telemetry(),
    )
    errors.install(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "pool": rt.pool, "in_flight": worker.in_flight}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return await readiness(rt)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
