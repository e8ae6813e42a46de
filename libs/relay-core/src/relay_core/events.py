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

# Why a run failed or was stopped: the `reason` of its `error` event and of the
# run's `error` (`{type, message, reason?}`). The one list: `run_error` and
# `error` take it, so mypy checks every reason the code gives, and
# tests/docs/test_design_doc.py checks that docs/design.md names each one.
ErrorReason = Literal[
    "cost_budget_exceeded",  # the run's ceiling (max_cost_usd)
    "daily_budget_exceeded",  # the user's ceiling for the UTC day
    "step_budget_exceeded",  # RELAY_STEP_BUDGET model turns
    "model_unavailable",  # every model of the chain failed (or is unknown)
    "kill_switch",  # stopped by the kill switch (the run ends `cancelled`)
    "lease_lost",  # another attempt owns the run (dropped by the fence, never seen)
    "max_deliveries",  # delivered RELAY_MAX_DELIVERIES times: dead-lettered
    "internal",  # a bug; logged
]
ERROR_REASONS: frozenset[str] = frozenset(get_args(ErrorReason))

# What a run's `should_stop` answers: `cancelled` ends the run `cancelled` with
# no error, `kill_switch` ends it `cancelled` with that reason, `lease_lost` ends
# this attempt without a trace (another runner owns the run).
StopReason = Literal["cancelled", "kill_switch", "lease_lost"]


@dataclass(frozen=True, slots=True)
class Event:
    """One run event. `id` is set once it has been stored (the stream entry id)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    # The data as stored (compact JSON, `encode_fields`), kept by `decode_entry`
    # so an SSE writer sends it as it is instead of encoding `data` again.
    raw: str | None = field(default=None, compare=False, repr=False)

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
    raw = norm.get("data") or "{}"
    return Event(type=norm["event"], data=json.loads(raw), id=_text(entry_id), raw=raw)


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


def run_error(type_: str, message: str, reason: ErrorReason | None = None) -> dict[str, Any]:
    """A failed run's `error`, `{type, message, reason?}` (also its error event's data)."""
    data: dict[str, Any] = {"type": type_, "message": message}
    if reason is not None:
        data["reason"] = reason
    return data


def error(type_: str, message: str, reason: ErrorReason | None = None) -> Event:
    return Event("error", run_error(type_, message, reason))


def resync(reason: str, transcript_url: str) -> Event:
    return Event("resync", {"reason": reason, "transcript_url": transcript_url})


def done(status_: str, cost_usd: float) -> Event:
    return Event("done", {"status": status_, "cost_usd": cost_usd})
