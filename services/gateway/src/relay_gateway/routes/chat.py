"""`POST /v1/chat/stream`: an interactive run, its events streamed on the response."""

from __future__ import annotations

from fastapi import APIRouter
from sse_starlette import EventSourceResponse

from relay_gateway import stream
from relay_gateway.deps import CurrentPrincipal, RuntimeDep
from relay_gateway.routes import AUTH, errors
from relay_gateway.routes.runs import IdempotencyKey
from relay_gateway.schemas import ChatStreamIn
from relay_gateway.sse_schema import event_schema

router = APIRouter(prefix="/v1/chat", tags=["chat"])

_SSE_DOC = {
    "description": (
        "Server-sent events of the run (`start`, `status`, `token`, `tool_start`, "
        "`tool_end`, `usage`, `error`, `done`); the stream ends after `done`. Headers "
        "`Relay-Run-Id`, `Relay-Conversation-Id` and `Relay-Events-Url` name the run."
    ),
    "content": {"text/event-stream": {"schema": event_schema()}},
}


@router.post(
    "/stream",
    response_class=EventSourceResponse,
    summary="Run an interactive turn and stream its events",
    responses={200: _SSE_DOC, **errors(400, 404, 409, 413, 415, 422, *AUTH)},
)
async def chat_stream(
    body: ChatStreamIn,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> EventSourceResponse:
    """Disconnecting before `done` cancels the run, unless `detach` is true (then
    rejoin it on `Relay-Events-Url` with `Last-Event-ID`)."""
    return await stream.open_chat_stream(
        runtime=runtime, principal=principal, body=body, idempotency_key=idempotency_key
    )
