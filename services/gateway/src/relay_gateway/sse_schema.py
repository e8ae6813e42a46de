"""The OpenAPI description of a run's server-sent events (DESIGN, "Events").

Why a hand-written JSON Schema and not pydantic models: an SSE stream is not
a JSON body. In OpenAPI 3.1 the `schema` of a `text/event-stream` response
describes ONE event, as an object of its SSE fields (`id`, `event`, `data`);
`data` is a JSON string, described with `contentMediaType` and
`contentSchema`. One branch per event type ties each type to its payload, so
a client generator (and the schemathesis fuzz test, which validates every
event it receives) knows exactly what each event carries. The payloads are
those built by `relay_core.events`; keep the two in step.
"""

from __future__ import annotations

from typing import Any

_INT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}
_NUM = {"type": "number", "minimum": 0}

# Event type -> (required payload fields, optional payload fields)
_PAYLOADS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "start": ({"run_id": _STR, "attempt": _INT}, {}),
    "status": ({"message": _STR}, {}),
    "token": ({"text": _STR, "step": _INT}, {}),
    "tool_start": ({"name": _STR, "args": {"type": "object"}, "call_id": _STR, "step": _INT}, {}),
    "tool_end": ({"name": _STR, "call_id": _STR, "ok": {"type": "boolean"}}, {"error": _STR}),
    "resumed": ({"attempt": _INT, "from_step": _INT}, {}),
    "step_retry": ({"step": _INT, "reason": _STR, "model": _STR}, {}),
    "usage": ({"input_tokens": _INT, "output_tokens": _INT, "cost_usd": _NUM}, {}),
    "error": ({"type": _STR, "message": _STR}, {"reason": _STR}),
    "resync": ({"reason": _STR, "transcript_url": _STR}, {}),
    "done": (
        {"status": {"enum": ["succeeded", "failed", "cancelled"]}, "cost_usd": _NUM},
        {},
    ),
}


def _event(name: str, required: dict[str, Any], optional: dict[str, Any]) -> dict[str, Any]:
    payload = {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **optional},
    }
    return {
        "type": "object",
        "title": f"{name} event",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "id": {
                "type": "string",
                "description": "the event's id; send it as `Last-Event-ID` to resume after it",
            },
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": payload,
            },
        },
    }


def event_schema() -> dict[str, Any]:
    """One SSE event of a run: a `oneOf` over the event types."""
    return {"oneOf": [_event(name, *fields) for name, fields in _PAYLOADS.items()]}
