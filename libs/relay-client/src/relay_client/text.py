"""What a run has said so far, kept exactly as the stream's rules say.

Sans-IO: `RunState.accept` takes one SSE message and returns the typed event
to hand to the caller, or None for one to skip; the sync and async streams
only do the network. Rules (the events contract):

- `token` appends to the text of its step; the text is the steps in order.
- `step_retry` (a provider failed mid-turn; the step runs again, perhaps on
  a fallback model): the partial text of that step is dropped.
- `resumed` (another runner took the run over): the text of the steps from
  `from_step` on is dropped; the new attempt sends it again.
- An event whose id is not after the last one kept is a duplicate and is
  skipped (the server already guarantees this after `Last-Event-ID`; the
  check costs nothing and holds even against a misbehaving proxy).
- `resync` (the resume point is older than what the server keeps): the
  stream goes on, but some text may be missing, so when `done` arrives the
  text is replaced by the run's transcript (`needs_transcript`).
"""

from __future__ import annotations

from relay_client.events import (
    DoneEvent,
    Event,
    ResumedEvent,
    ResyncEvent,
    StepRetryEvent,
    TokenEvent,
    UsageEvent,
    parse_event,
)

__all__ = ["RunState", "stream_id"]


def stream_id(value: str) -> tuple[int, int] | None:
    """`ms-seq` as a comparable tuple; None when it is not one."""
    ms, _, seq = value.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        return None
    return int(ms), int(seq or 0)


class RunState:
    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self._steps: dict[int, list[str]] = {}
        self.done: DoneEvent | None = None
        self.resync: ResyncEvent | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self._replaced: str | None = None

    @property
    def text(self) -> str:
        if self._replaced is not None:
            return self._replaced
        return "".join("".join(self._steps[s]) for s in sorted(self._steps))

    @property
    def needs_transcript(self) -> bool:
        return self.resync is not None and self._replaced is None

    def use_transcript(self, text: str) -> None:
        self._replaced = text

    def _is_duplicate(self, event_id: str | None) -> bool:
        if not event_id or not self.last_event_id:
            return False
        new, last = stream_id(event_id), stream_id(self.last_event_id)
        return new is not None and last is not None and new <= last

    def accept(self, name: str, data: str, event_id: str | None) -> Event | None:
        """The typed event for one SSE message, or None (keep-alive, duplicate)."""
        if not name or (name == "message" and not data):
            return None
        if self.done is not None or self._is_duplicate(event_id):
            return None
        event = parse_event(name, data, event_id)
        if event_id:
            self.last_event_id = event_id
        self._apply(event)
        return event

    def _drop_from(self, step: int) -> None:
        for s in [s for s in self._steps if s >= step]:
            del self._steps[s]

    def _apply(self, event: Event) -> None:
        if isinstance(event, TokenEvent):
            self._steps.setdefault(event.step, []).append(event.text)
        elif isinstance(event, StepRetryEvent):
            self._drop_from(event.step)
        elif isinstance(event, ResumedEvent):
            self._drop_from(event.from_step)
        elif isinstance(event, UsageEvent):
            self.input_tokens += event.input_tokens
            self.output_tokens += event.output_tokens
        elif isinstance(event, ResyncEvent):
            self.resync = event
        elif isinstance(event, DoneEvent):
            self.done = event
