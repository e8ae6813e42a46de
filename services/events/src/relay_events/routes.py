"""HTTP routes of the events service: parse, call one service function, return.

`Last-Event-ID` comes from the header (what a browser's EventSource sends on
reconnect) or, for clients that cannot set headers, `?last_event_id=`; the
header wins when both are present.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from relay_events import service
from relay_events.deps import RuntimeDep

router = APIRouter()


@router.get(
    "/v1/runs/{run_id}/events",
    response_class=EventSourceResponse,
    summary="Stream a run's events (SSE), resumable with Last-Event-ID",
    responses={
        200: {"content": {"text/event-stream": {}}},
        400: {"description": "malformed Last-Event-ID"},
        401: {"description": "missing or invalid API key"},
        404: {"description": "unknown run, or another user's"},
        503: {"description": "Redis or state unavailable"},
    },
)
async def run_events(
    run_id: str,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query()] = None,
) -> EventSourceResponse:
    return await service.open_run_events(
        runtime=runtime,
        authorization=authorization,
        run_id=run_id,
        last_event_id=last_event_id_header if last_event_id_header is not None else last_event_id,
    )


@router.get("/healthz", summary="Liveness: answers without touching any dependency")
async def healthz(runtime: RuntimeDep) -> dict[str, object]:
    stats = runtime.hub.stats()
    return {"status": "ok", "subscribers": stats.subscribers, "reader": stats.reader_connected}


@router.get("/readyz", summary="Readiness: Redis and state reachable")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    ready, body = await service.readiness(runtime=runtime)
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep) -> Response:
    payload, content_type = runtime.metrics.render()
    return Response(payload, media_type=content_type)
