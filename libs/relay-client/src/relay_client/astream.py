"""`AsyncRunStream`: `RunStream` for asyncio (`async for event in stream`).

The same rules, state and events as `relay_client.stream`; only the waiting
differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING

import httpx
from httpx_sse import EventSource, aconnect_sse

from relay_client.config import describe
from relay_client.errors import RelayError
from relay_client.events import DoneEvent, Event, TranscriptText
from relay_client.retry import NETWORK_ERRORS, Backoff
from relay_client.stream import StreamTarget, _Base, _Refused

if TYPE_CHECKING:
    from relay_client.aclient import AsyncRelayClient

__all__ = ["AsyncRunStream"]

log = logging.getLogger(__name__)


class AsyncRunStream(_Base):
    def __init__(
        self,
        client: AsyncRelayClient,
        target: StreamTarget,
        *,
        last_event_id: str | None = None,
        cancel_on_close: bool = False,
    ) -> None:
        super().__init__(target, last_event_id=last_event_id, cancel_on_close=cancel_on_close)
        self._client = client
        self._gen = self._events()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self._gen.__anext__()

    async def __aenter__(self) -> AsyncRunStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop following (a chat not detached is cancelled if it has not finished)."""
        await self._gen.aclose()

    async def until_done(self) -> AsyncRunStream:
        async for _ in self:
            pass
        return self

    def _connect(self) -> contextlib.AbstractAsyncContextManager[EventSource]:
        method, url, kwargs = self.target.request(self.state.last_event_id)
        timeout = self._client.config.stream_timeout()
        return aconnect_sse(self._client.http, method, url, timeout=timeout, **kwargs)

    async def _connection(self, backoff: Backoff) -> AsyncGenerator[Event | None, None]:
        if self.target.needs_url:
            self.target.events_url = (await self._client.get_run(self.run_id or "")).events_url
        async with self._connect() as source:
            response = source.response
            if response.status_code != 200:
                await response.aread()
                raise _Refused(self._refused(response, self._client.config.retry.max_attempts))
            self.target.learn(response)
            yield None
            backoff.reset()
            async for sse in source.aiter_sse():
                event = self.state.accept(sse.event, sse.data, sse.id or None)
                if event is None:
                    continue
                if isinstance(event, DoneEvent) and self.state.needs_transcript:
                    yield await self._transcript()
                yield event

    async def _transcript(self) -> TranscriptText:
        resync = self.state.resync
        assert resync is not None and self.run_id is not None
        transcript = await self._client.transcript_at(resync.transcript_url)
        self.state.use_transcript(transcript.run_text(self.run_id))
        return TranscriptText(text=self.state.text)

    async def _events(self) -> AsyncGenerator[Event, None]:
        backoff = Backoff(self._client.config.retry)
        dropped: str | None = None
        try:
            while self.state.done is None:
                retry_after: float | None = None
                try:
                    async with contextlib.aclosing(self._connection(backoff)) as connection:
                        async for event in connection:
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
                await asyncio.sleep(wait)
        finally:
            if self.state.done is None and self.cancel_on_close and self.run_id:
                await self._cancel_quietly()

    async def _cancel_quietly(self) -> None:
        try:
            await asyncio.shield(self._client.cancel(self.run_id or ""))
        except (RelayError, httpx.TransportError) as exc:
            log.warning("could not cancel the abandoned run: %s", exc)
