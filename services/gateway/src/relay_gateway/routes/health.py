"""`/healthz` (alive), `/readyz` (dependencies reachable) and `/metrics` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from relay_gateway import health_service
from relay_gateway.deps import RuntimeDep
from relay_gateway.metrics import GatewayMetrics
from relay_gateway.routes import errors
from relay_gateway.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness (never checks dependencies)")
async def healthz(runtime: RuntimeDep) -> Health:
    return health_service.health(runtime=runtime)


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness: state and Redis reachable",
    responses=errors(503),
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    ready, body = await health_service.readiness(runtime=runtime)
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry: GatewayMetrics = request.app.state.metrics
    payload, content_type = registry.render()
    return Response(payload, media_type=content_type)
