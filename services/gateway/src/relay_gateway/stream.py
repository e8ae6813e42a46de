"""The interactive stream: `POST /v1/chat/stream` runs an interactive run and
streams its events on the same response.

Decisions, and why:

- **One engine.** Events come from `relay_core.fanout.EventHub` (one hub per
  gateway process, a bounded number of Redis connections) and are written by
  `relay_core.sse`, exactly as the events service serves
  `/v1/runs/{id}/events`; nothing here reads a Redis stream itself.
- **Nothing missed.** The run is recorded (and enqueued to the interactive
  queue) by state first, then subscribed from the start of its stream, so an
  event the runner writes before the subscription exists is replayed.
- **Disconnect cancels, precisely.** The run is cancelled through state (the
  durable record plus the runner's fast-path flag) only when the *client*
  went away (`http.disconnect`) before the stream carried `done`, and the
  request did not ask to `detach`. A stream that ends for another reason (the
  subscriber fell too far behind, the gateway is shutting down) leaves the run
  going: the client can rejoin it on `events_url` with its last event id.
- **Rejoinable from the first byte.** The response headers name the run, its
  conversation and its `events_url`, so a detached client can rejoin before
  any event has arrived.
"""

from __future__ import annotations

import logging
from typing import Any

from sse_starlette import EventSourceResponse

from relay_core import sse
from relay_core.errors import ApiError
from relay_core.events import Event
from relay_core.fanout import HubUnavailable, SubscriberTooSlow, Subscription
from relay_core.state_api import Principal
from relay_gateway import service
from relay_gateway.runtime import Runtime
from relay_gateway.schemas import ChatStreamIn

log = logging.getLogger(__name__)


class _Watched:
    """A subscription that remembers whether `done` went out and whether it was dropped."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub
        self.finished = False
        self.dropped = False
        self.client_left = False

    async def next_batch(self, limit: int = 256) -> list[Event]:
        try:
            batch = await self._sub.next_batch(limit)
        except SubscriberTooSlow:
            self.dropped = True
            raise
        if any(event.terminal for event in batch):
            self.finished = True
        return batch

    def close(self) -> None:
        self._sub.close()

    async def on_disconnect(self, message: Any) -> None:
        self.client_left = True

    @property
    def abandoned(self) -> bool:
        return self.client_left and not self.finished and not self.dropped


async def open_chat_stream(
    *,
    runtime: Runtime,
    principal: Principal,
    body: ChatStreamIn,
    idempotency_key: str | None,
) -> EventSourceResponse:
    submitted = await service.submit_run(
        runtime=runtime,
        principal=principal,
        body=body,
        idempotency_key=idempotency_key,
        kind="interactive",
    )
    run = submitted.record
    try:
        # A run created by this request: its stream holds only what was written since.
        sub = await runtime.hub.subscribe(run.run_id, run=run, fresh=not submitted.replayed)
    except HubUnavailable:
        if not body.detach:
            runtime.cancels.request(run.run_id, user_id=principal.user_id)
        raise ApiError(503, "event store unavailable", reason="redis_unavailable") from None
    watched = _Watched(sub)
    runtime.metrics.stream_opened()

    def on_close() -> None:
        runtime.metrics.stream_closed()
        watched.close()
        if watched.abandoned and not body.detach:
            log.info("client left an interactive run; cancelling", extra={"run_id": run.run_id})
            runtime.cancels.request(run.run_id, user_id=principal.user_id)

    headers = {
        "Relay-Run-Id": run.run_id,
        "Relay-Conversation-Id": run.conversation_id,
        "Relay-Events-Url": submitted.run.events_url,
    }
    if submitted.replayed:
        headers["Idempotent-Replayed"] = "true"
    response = sse.response(
        watched,
        keepalive_s=runtime.settings.keepalive_s,
        headers=headers,
        on_close=on_close,
    )
    # sse-starlette calls this when the client's `http.disconnect` arrives.
    response.client_close_handler_callable = watched.on_disconnect
    return response
