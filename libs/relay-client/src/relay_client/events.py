"""A run's events as typed objects (the SSE wire contract), plus the two the
SDK adds itself.

From the server (`event:` name, JSON `data:`, `id:` the resume point):
`start`, `status`, `token`, `tool_start`, `tool_end`, `resumed`,
`step_retry`, `usage`, `error`, `resync`, `done`. An event type this SDK does
not know (a newer server) arrives as `UnknownEvent` rather than failing.

Added by the SDK, never sent by a server (no `id`):
- `Reconnected`: the connection dropped and a new one resumed after
  `after_id`; nothing was lost or repeated.
- `TranscriptText`: after a `resync` (events older than the resume point
  were no longer kept) the run's full text, read from the transcript, just
  before `done`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "SERVER_EVENTS",
    "DoneEvent",
    "ErrorEvent",
    "Event",
    "Reconnected",
    "ResumedEvent",
    "ResyncEvent",
    "StartEvent",
    "StatusEvent",
    "StepRetryEvent",
    "TokenEvent",
    "ToolEndEvent",
    "ToolStartEvent",
    "TranscriptText",
    "UnknownEvent",
    "UsageEvent",
    "parse_event",
]


class Event(BaseModel):
    """Any event; `id` is the server's event id (None for synthesised ones)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
    id: str | None = None


class StartEvent(Event):
    type: Literal["start"] = "start"
    run_id: str
    attempt: int


class StatusEvent(Event):
    type: Literal["status"] = "status"
    message: str


class TokenEvent(Event):
    type: Literal["token"] = "token"
    text: str
    step: int


class ToolStartEvent(Event):
    type: Literal["tool_start"] = "tool_start"
    name: str
    args: dict[str, Any]
    call_id: str
    step: int


class ToolEndEvent(Event):
    type: Literal["tool_end"] = "tool_end"
    name: str
    call_id: str
    ok: bool
    error: str | None = None


class ResumedEvent(Event):
    """A new attempt took over; text of steps from `from_step` on is sent again."""

    type: Literal["resumed"] = "resumed"
    attempt: int
    from_step: int


class StepRetryEvent(Event):
    """Discard the partial text of `step`: it is being retried (on `model`)."""

    type: Literal["step_retry"] = "step_retry"
    step: int
    reason: str
    model: str


class UsageEvent(Event):
    type: Literal["usage"] = "usage"
    input_tokens: int
    output_tokens: int
    cost_usd: float


class ErrorEvent(Event):
    type: Literal["error"] = "error"
    message: str
    reason: str | None = None
    # the error's type (`cost_budget`, `kill_switch`...): `type` names the event
    error_type: str = ""


class ResyncEvent(Event):
    """The resume point is older than what is kept; the transcript has it all."""

    type: Literal["resync"] = "resync"
    reason: str
    transcript_url: str


class DoneEvent(Event):
    type: Literal["done"] = "done"
    status: Literal["succeeded", "failed", "cancelled"]
    cost_usd: float


class UnknownEvent(Event):
    data: dict[str, Any] = {}


class Reconnected(Event):
    """SDK-made: the stream dropped (`error`) and resumed after `after_id`."""

    type: Literal["reconnected"] = "reconnected"
    after_id: str | None
    attempts: int
    downtime_s: float
    error: str


class TranscriptText(Event):
    """SDK-made, after a `resync`: the run's whole text, from its transcript."""

    type: Literal["transcript"] = "transcript"
    text: str


SERVER_EVENTS: dict[str, type[Event]] = {
    "start": StartEvent,
    "status": StatusEvent,
    "token": TokenEvent,
    "tool_start": ToolStartEvent,
    "tool_end": ToolEndEvent,
    "resumed": ResumedEvent,
    "step_retry": StepRetryEvent,
    "usage": UsageEvent,
    "error": ErrorEvent,
    "resync": ResyncEvent,
    "done": DoneEvent,
}


def parse_event(name: str, data: str, event_id: str | None = None) -> Event:
    """One SSE message as a typed event; malformed or unknown: `UnknownEvent`."""
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        payload = {"raw": data}
    if not isinstance(payload, dict):
        payload = {"value": payload}
    model = SERVER_EVENTS.get(name)
    if model is None:
        return UnknownEvent(type=name, id=event_id or None, data=payload)
    fields = dict(payload)
    if model is ErrorEvent:
        fields["error_type"] = str(fields.pop("type", ""))
    fields.pop("id", None)
    try:
        return model.model_validate({**fields, "id": event_id or None})
    except ValidationError:
        return UnknownEvent(type=name, id=event_id or None, data=payload)
