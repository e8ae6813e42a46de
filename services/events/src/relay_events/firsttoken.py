"""A span for the first token a stream delivers, in the run's own trace.

A client's `GET /v1/runs/{id}/events` is its own request (its server span is
in whatever trace the client sent, usually a new one); the run's trace began
at submit. The moment an SSE subscriber gets the run's first token is the
latency users feel, so it is a span of the run's trace (`deliver first
token`, parented on the run's stored `traceparent`), from the moment the
stream opened to the batch holding that token being handed to the writer,
linked to the request's span. Only with tracing on (the service then wraps
the subscription in `FirstTokenSource`); off, the subscription is served as
it is.
"""

from __future__ import annotations

import time

from relay_core import tracing
from relay_core.events import Event
from relay_core.sse import EventSource

__all__ = ["FirstTokenSource", "watch"]


class FirstTokenSource:
    """An `EventSource` that passes batches through and records the first token."""

    def __init__(
        self, source: EventSource, *, run_id: str, traceparent: str, resumed: bool
    ) -> None:
        self._source = source
        self._run_id = run_id
        self._traceparent = traceparent
        self._resumed = resumed
        self._opened_ns = time.time_ns()
        self._link = tracing.link_to(tracing.traceparent())  # the request's own span
        self._seen = False

    async def next_batch(self, limit: int = 256) -> list[Event]:
        batch = await self._source.next_batch(limit)
        if not self._seen:
            first = next((e for e in batch if e.type == "token"), None)
            if first is not None:
                self._seen = True
                self._record(first)
        return batch

    def _record(self, event: Event) -> None:
        span = tracing.start(
            "deliver first token",
            parent=tracing.parent_from(self._traceparent),
            attributes={
                "relay.run_id": self._run_id,
                "relay.event_id": event.id or "",
                "relay.resumed": self._resumed,
            },
            links=self._link,
            start_time_ns=self._opened_ns,
        )
        if span is not None:
            span.end()

    def close(self) -> None:
        self._source.close()


def watch(
    source: EventSource, *, run_id: str, traceparent: str | None, resumed: bool
) -> EventSource:
    """`source` as it is when tracing is off or the run has no trace; else wrapped."""
    if not tracing.ENABLED or not traceparent:
        return source
    return FirstTokenSource(source, run_id=run_id, traceparent=traceparent, resumed=resumed)
