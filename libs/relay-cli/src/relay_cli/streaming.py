"""Follow a run's stream in the terminal: tokens live, tool calls, status,
reconnects, and a cost and usage summary at the end.

The SDK keeps the text right (`step_retry`, `resumed`, `resync`); a terminal
cannot take back what it printed, so when the final text differs from what
was shown live, it is printed once more, whole, under a rule.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from relay_cli import output
from relay_client import RunStream
from relay_client.events import (
    DoneEvent,
    ErrorEvent,
    Event,
    Reconnected,
    ResumedEvent,
    ResyncEvent,
    StartEvent,
    StatusEvent,
    StepRetryEvent,
    TokenEvent,
    ToolEndEvent,
    ToolStartEvent,
    TranscriptText,
)

__all__ = ["Shown", "follow"]


@dataclass
class Shown:
    """What went to the terminal, to know whether the final text must be reprinted."""

    tokens: list[str] = field(default_factory=list)
    at_line_start: bool = True
    error: ErrorEvent | None = None

    def text(self, value: str) -> None:
        if value:
            output.write(value)
            self.at_line_start = value.endswith("\n")

    def line(self, value: str, style: str = "dim") -> None:
        """A note on stderr, on a line of its own when both share the terminal
        (piped, stdout gets exactly the answer)."""
        if not self.at_line_start and output.stdout_is_terminal():
            output.write("\n")
            self.at_line_start = True
        output.note(value, style)


def _args(args: dict[str, object]) -> str:
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _show(event: Event, shown: Shown) -> None:
    if isinstance(event, TokenEvent):
        shown.tokens.append(event.text)
        shown.text(event.text)
    elif isinstance(event, StartEvent) and event.attempt > 1:
        shown.line(f"· attempt {event.attempt}")
    elif isinstance(event, StatusEvent):
        shown.line(f"· {event.message}")
    elif isinstance(event, ToolStartEvent):
        shown.line(f"⚙ {event.name}({_args(event.args)})", "cyan")
    elif isinstance(event, ToolEndEvent):
        mark = "✓" if event.ok else "✗"
        detail = f": {event.error}" if event.error else ""
        shown.line(f"{mark} {event.name}{detail}", "cyan" if event.ok else "red")
    elif isinstance(event, StepRetryEvent):
        shown.line(f"↻ step {event.step} again on {event.model} ({event.reason})", "yellow")
    elif isinstance(event, ResumedEvent):
        shown.line(f"↻ resumed by attempt {event.attempt} from step {event.from_step}", "yellow")
    elif isinstance(event, Reconnected):
        shown.line(f"reconnected, resuming after event {event.after_id}", "yellow")
    elif isinstance(event, ResyncEvent):
        shown.line("events expired on the server; the text will come from the transcript", "yellow")
    elif isinstance(event, ErrorEvent):
        shown.error = event
        shown.line(f"✗ {event.message}", "red")


def _summary(stream: RunStream, started: float) -> str:
    state = stream.state
    parts = [
        f"{'✓' if stream.status == 'succeeded' else '✗'} {stream.status}",
        f"{state.input_tokens:,} in / {state.output_tokens:,} out tokens",
        f"${stream.cost_usd or 0:.4f}",
        f"run {stream.run_id}",
        f"{time.monotonic() - started:.1f} s",
    ]
    if stream.reconnects:
        parts.append(f"{stream.reconnects} reconnect{'s' if stream.reconnects > 1 else ''}")
    return " · ".join(parts)


def follow(stream: RunStream, *, as_json: bool) -> DoneEvent | None:
    """Print the stream to its end; its `done` (None when there was none)."""
    started = time.monotonic()
    shown = Shown()
    for event in stream:
        if as_json:
            output.emit_json(event.model_dump(mode="json", exclude_none=True))
            continue
        if isinstance(event, TranscriptText):
            continue  # printed below, as any corrected text
        _show(event, shown)
    if as_json:
        return stream.done
    if stream.text and stream.text != "".join(shown.tokens):
        shown.line("── the final text (corrected after a retry or resync) ──", "yellow")
        shown.text(stream.text)
    if not shown.at_line_start:
        shown.text("\n")
    style = "green" if stream.status == "succeeded" else "red"
    output.note(_summary(stream, started), style)
    return stream.done
