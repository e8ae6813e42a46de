"""`RunStream`: a run's events, resumed after any network error, exactly once.

Iterate it for typed events (`relay_client.events`); afterwards `text` is
the run's full text and `done` its terminal event. Each connection sends
`Last-Event-ID` (the last id received) so the server resumes right after it;
a drop (a reset, a timeout, a server restart, a stream that ended without
`done`) yields one `Reconnected` event and goes on after a jittered backoff
(`relay_client.retry`), until `give_up_after_s` of failures in a row
(`ConnectionLost`). Refusals that retrying cannot fix (401, 404, the kill
switch) raise at once.

A chat stream (`RelayClient.chat`) opens with `POST /v1/chat/stream` and the
run detached on the server, so a dropped connection never cancels it; the
SDK resumes on the run's events URL instead, and cancels the run itself
when the caller stops iterating early (unless it asked to `detach`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource, connect_sse

from relay_client.config import describe
from relay_client.errors import ConnectionLost, RelayError
from relay_client.events import DoneEvent, Event, Reconnected, TranscriptText
from relay_client.retry import NETWORK_ERRORS, Backoff, retryable
from relay_client.text import RunState

if TYPE_CHECKING:
    from relay_client.client import RelayClient

__all__ = ["RunStream", "StreamTarget"]

log = logging.getLogger(__name__)


class StreamTarget:
    """What a stream follows; a chat learns its run from the first response."""

    def __init__(
        self,
        *,
        run_id: str | None = None,
        events_url: str | None = None,
        conversation_id: str | None = None,
        chat_body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        self.run_id = run_id
        # None: asked from the run (GET /v1/runs/{id}) before the first connection
        self.events_url = events_url
        self.conversation_id = conversation_id
        self.chat_body = chat_body
        self.idempotency_key = idempotency_key

    @property
    def needs_url(self) -> bool:
        return self.events_url is None and self.run_id is not None

    @property
    def opening_chat(self) -> bool:
        return self.run_id is None and self.chat_body is not None

    def request(self, last_event_id: str | None) -> tuple[str, str, dict[str, Any]]:
        """(method, url, httpx kwargs) of the next connection."""
        if self.opening_chat:
            headers = {"Idempotency-Key": self.idempotency_key or ""}
            return "POST", "/v1/chat/stream", {"json": self.chat_body, "headers": headers}
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        return "GET", self.events_url or "", {"headers": headers}

    def learn(self, response: httpx.Response) -> None:
        """A chat's run, from the response headers of its first connection."""
        if self.run_id is None:
            self.run_id = response.headers.get("relay-run-id")
            self.events_url = response.headers.get("relay-events-url") or (
                f"/v1/runs/{self.run_id}/events"
            )
            self.conversation_id = response.headers.get("relay-conversation-id")


class _Refused(Exception):
    def __init__(self, error: RelayError) -> None:
        self.error = error


class _Base:
    """State and results shared by `RunStream` and `AsyncRunStream`."""

    def __init__(
        self, target: StreamTarget, *, last_event_id: str | None, cancel_on_close: bool
    ) -> None:
        self.target = target
        self.state = RunState(last_event_id)
        self.reconnects = 0
        self.cancel_on_close = cancel_on_close
        self._refusals = 0

    @property
    def run_id(self) -> str | None:
        return self.target.run_id

    @property
    def conversation_id(self) -> str | None:
        return self.target.conversation_id

    @property
    def text(self) -> str:
        """The run's text so far (after `done`: all of it, a resync included)."""
        return self.state.text

    @property
    def last_event_id(self) -> str | None:
        return self.state.last_event_id

    @property
    def done(self) -> DoneEvent | None:
        return self.state.done

    @property
    def status(self) -> str | None:
        return self.state.done.status if self.state.done else None

    @property
    def cost_usd(self) -> float | None:
        return self.state.done.cost_usd if self.state.done else None

    def _refused(self, response: httpx.Response, max_attempts: int) -> RelayError:
        error = RelayError.from_response(response)
        self._refusals += 1
        if not retryable(error) or self._refusals >= max_attempts:
            raise error
        return error

    def _reconnected(self, backoff: Backoff, error: str) -> Reconnected:
        self.reconnects += 1
        event = Reconnected(
            after_id=self.state.last_event_id,
            attempts=backoff.failures,
            downtime_s=round(backoff.down_for_s(), 3),
            error=error,
        )
        log.info(
            "reconnected, resuming after event %s",
            self.state.last_event_id,
            extra={"run_id": self.run_id},
        )
        return event

    def _check_deadline(self, backoff: Backoff, error: str) -> None:
        if backoff.exhausted():
            raise ConnectionLost(
                f"could not reach the events stream for {backoff.down_for_s():.0f} s "
                f"(last error: {error}); resume later after event {self.last_event_id}",
                reason="connection_lost",
            )


class RunStream(_Base):
    def __init__(
        self,
        client: RelayClient,
        target: StreamTarget,
        *,
        last_event_id: str | None = None,
        cancel_on_close: bool = False,
    ) -> None:
        super().__init__(target, last_event_id=last_event_id, cancel_on_close=cancel_on_close)
        self._client = client
        self._gen = self._events()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return next(self._gen)

    def __enter__(self) -> RunStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop following (a chat not detached is cancelled if it has not finished)."""
        self._gen.close()

    def until_done(self) -> RunStream:
        """Consume every event; returns self (read `text`, `status`, `cost_usd`)."""
        for _ in self:
            pass
        return self

    def _connect(self) -> contextlib.AbstractContextManager[EventSource]:
        method, url, kwargs = self.target.request(self.state.last_event_id)
        timeout = self._client.config.stream_timeout()
        return connect_sse(self._client.http, method, url, timeout=timeout, **kwargs)

    def _connection(self, backoff: Backoff) -> Generator[Event | None, None, None]:
        """One connection: None once it is open, then its events; raises
        `_Refused` for a refusal worth retrying."""
        if self.target.needs_url:
            self.target.events_url = self._client.get_run(self.run_id or "").events_url
        with self._connect() as source:
            response = source.response
            if response.status_code != 200:
                response.read()
                raise _Refused(self._refused(response, self._client.config.retry.max_attempts))
            self.target.learn(response)
            yield None
            backoff.reset()
            for sse in source.iter_sse():
                event = self.state.accept(sse.event, sse.data, sse.id or None)
                if event is None:
                    continue
                if isinstance(event, DoneEvent) and self.state.needs_transcript:
                    yield self._transcript()
                yield event

    def _transcript(self) -> TranscriptText:
        resync = self.state.resync
        assert resync is not None and self.run_id is not None
        transcript = self._client.transcript_at(resync.transcript_url)
        self.state.use_transcript(transcript.run_text(self.run_id))
        return TranscriptText(text=self.state.text)

    def _events(self) -> Generator[Event, None, None]:
        backoff = Backoff(self._client.config.retry)
        dropped: str | None = None
        try:
            while self.state.done is None:
                retry_after: float | None = None
                try:
                    with contextlib.closing(self._connection(backoff)) as connection:
                        for event in connection:
                            if event is not None:
                                yield event
                            elif dropped is not None:
                                yield self._reconnected(backoff, dropped)
                                dropped = None
                    if self.state.done is not None:
                        return
                    error = "the stream ended before the run's done event"
                except _Refused as refused:
                    error, retry_after = str(refused.error), refused.error.retry_after_s
                except NETWORK_ERRORS as exc:
                    error = describe(exc)
                dropped = dropped or error
                wait = backoff.failed(retry_after)
                self._check_deadline(backoff, error)
                time.sleep(wait)
        finally:
            if self.state.done is None and self.cancel_on_close and self.run_id:
                self._cancel_quietly()

    def _cancel_quietly(self) -> None:
        try:
            self._client.cancel(self.run_id or "")
        except (RelayError, httpx.TransportError) as exc:
            log.warning("could not cancel the abandoned run: %s", exc)
