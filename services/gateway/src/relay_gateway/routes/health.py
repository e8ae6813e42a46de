"""Health routes. Public port: a minimal `/healthz` (status only). Management
port (relay_core.management): the detailed `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from relay_core.management import Alive, alive
from relay_gateway import health_service
from relay_gateway.deps import RuntimeDep
from relay_gateway.metrics import GatewayMetrics
from relay_gateway.routes import errors
from relay_gateway.schemas import Health, Ready

router = APIRouter(tags=["health"])
management = APIRouter(tags=["management"])

router.add_api_route(
    "/healthz",
    alive,
    methods=["GET"],
    response_model=Alive,
    summary="Alive (status only; probes and metrics are on the management port)",
)


@management.get(
    "/healthz", response_model=Health, summary="Liveness with details (never checks dependencies)"
)
async def healthz(runtime: RuntimeDep) -> Health:
    return health_service.health(runtime=runtime)


@management.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness: state and Redis reachable",
    responses=errors(503),
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    ready, body = await health_service.readiness(runtime=runtime)
    return JSONResponse(body, status_code=200 if ready else 503)


@management.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry: GatewayMetrics = request.app.state.metrics
    payload, content_type = registry.render()
    return Response(payload, media_type=content_type)
