"""The run event model (DESIGN, "Events") and its Redis stream codec.

An event lives in `relay:events:{run_id}` as a stream entry with two fields,
`event` (the type) and `data` (compact JSON). The entry id is the SSE id, so a
client resumes with `Last-Event-ID` and the store decides order: no id is
minted by us, and two writers can never produce the same id.

Encoding is pure and tested on its own; writers and readers both use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

EventType = Literal[
    "start",
    "status",
    "token",
    "tool_start",
    "tool_end",
    "resumed",
    "step_retry",
    "usage",
    "error",
    "resync",
    "done",
]
EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))
TERMINAL_EVENTS: frozenset[str] = frozenset({"done"})

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

ErrorReason = Literal[
    "cost_budget_exceeded",
    "daily_budget_exceeded",
    "kill_switch",
    "model_unavailable",
    "step_budget_exceeded",
    "max_deliveries",
    "cancelled",
    "internal",
]


@dataclass(frozen=True, slots=True)
class Event:
    """One run event. `id` is set once it has been stored (the stream entry id)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS


def encode_fields(event: Event) -> dict[str, str]:
    """Stream entry fields of an event."""
    if event.type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event.type!r}")
    return {"event": event.type, "data": json.dumps(event.data, separators=(",", ":"))}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_entry(entry_id: str | bytes, fields: dict[Any, Any]) -> Event:
    """An event from a stream entry (bytes or str keys, as redis-py returns)."""
    norm = {_text(k): _text(v) for k, v in fields.items()}
    return Event(type=norm["event"], data=json.loads(norm.get("data") or "{}"), id=_text(entry_id))


def parse_stream_id(value: str) -> tuple[int, int]:
    """`ms-seq` as a tuple, for comparisons; raises ValueError on a malformed id."""
    ms, _, seq = value.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        raise ValueError(f"malformed event id {value!r}")
    return int(ms), int(seq or 0)


# Builders: the one place each event's data shape is written down.


def start(run_id: str, attempt: int) -> Event:
    return Event("start", {"run_id": run_id, "attempt": attempt})


def status(message: str) -> Event:
    return Event("status", {"message": message})


def token(text: str, step: int) -> Event:
    return Event("token", {"text": text, "step": step})


def tool_start(name: str, args: dict[str, Any], call_id: str, step: int) -> Event:
    return Event("tool_start", {"name": name, "args": args, "call_id": call_id, "step": step})


def tool_end(name: str, call_id: str, ok: bool, error: str | None = None) -> Event:
    data: dict[str, Any] = {"name": name, "call_id": call_id, "ok": ok}
    if error is not None:
        data["error"] = error
    return Event("tool_end", data)


def resumed(attempt: int, from_step: int) -> Event:
    return Event("resumed", {"attempt": attempt, "from_step": from_step})


def step_retry(step: int, reason: str, model: str) -> Event:
    return Event("step_retry", {"step": step, "reason": reason, "model": model})


def usage(input_tokens: int, output_tokens: int, cost_usd: float) -> Event:
    return Event(
        "usage",
        {"input_tokens": input_tokens, "output_tokens": output_tokens, "cost_usd": cost_usd},
    )


def error(type_: str, message: str, reason: str | None = None) -> Event:
    data: dict[str, Any] = {"type": type_, "message": message}
    if reason is not None:
        data["reason"] = reason
    return Event("error", data)


def resync(reason: str, transcript_url: str) -> Event:
    return Event("resync", {"reason": reason, "transcript_url": transcript_url})


def done(status_: str, cost_usd: float) -> Event:
    return Event("done", {"status": status_, "cost_usd": cost_usd})
