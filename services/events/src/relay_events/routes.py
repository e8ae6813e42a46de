"""HTTP routes of the events service: parse, call one service function, return.

`Last-Event-ID` comes from the header (what a browser's EventSource sends on
reconnect) or, for clients that cannot set headers, `?last_event_id=`; the
header wins when both are present. Probes and metrics are on the management
port (`management`, served by relay_core.httpserver); the public port keeps
a minimal `/healthz`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from relay_core.management import Alive, alive
from relay_events import service
from relay_events.deps import RuntimeDep

router = APIRouter()
management = APIRouter(tags=["management"])


@router.get(
    "/v1/runs/{run_id}/events",
    response_class=EventSourceResponse,
    summary="Stream a run's events (SSE), resumable with Last-Event-ID",
    responses={
        200: {"content": {"text/event-stream": {}}},
        400: {"description": "malformed Last-Event-ID"},
        401: {"description": "missing or invalid API key"},
        404: {"description": "unknown run, or another user's"},
        429: {
            "description": (
                "over a limit (error.reason: `rate_limit`, `concurrent_streams`, "
                "`auth_failures`); retry after `Retry-After` seconds"
            )
        },
        503: {"description": "Redis or state unavailable"},
    },
)
async def run_events(
    run_id: str,
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query()] = None,
) -> EventSourceResponse:
    return await service.open_run_events(
        runtime=runtime,
        authorization=authorization,
        client=request.client.host if request.client else None,
        run_id=run_id,
        last_event_id=last_event_id_header if last_event_id_header is not None else last_event_id,
    )


router.add_api_route(
    "/healthz",
    alive,
    methods=["GET"],
    response_model=Alive,
    summary="Alive (status only; probes and metrics are on the management port)",
)


@management.get(
    "/healthz", summary="Liveness with details: answers without touching any dependency"
)
async def healthz(runtime: RuntimeDep) -> dict[str, object]:
    stats = runtime.hub.stats()
    return {"status": "ok", "subscribers": stats.subscribers, "reader": stats.reader_connected}


@management.get("/readyz", summary="Readiness: Redis and state reachable")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    ready, body = await service.readiness(runtime=runtime)
    return JSONResponse(body, status_code=200 if ready else 503)


@management.get("/metrics", summary="Prometheus metrics")
async def metrics(runtime: RuntimeDep) -> Response:
    payload, content_type = runtime.metrics.render()
    return Response(payload, media_type=content_type)
