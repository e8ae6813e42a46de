"""One subscriber's view of a run: its replay, then the live feed the hub pushes.

Internal to `relay_core.fanout`, which re-exports `Subscription` and is where
subscriptions come from (`EventHub.subscribe`). The reader side (`_push`,
`_drop`, `_end_by_hub`) is called by the hub; the consumer side
(`__anext__`/`next_batch` -> `_fill` -> `_take`) by whoever streams it.

Design decisions, and why:

- **No gap, no duplicate: one filter.** The replay (`XRANGE (after_id cursor`,
  skipped when empty) and the live feed overlap at most (the hub fixes the
  run's live cursor after this subscriber registered); `_accept` delivers
  only ids strictly newer than the last one delivered, which makes the seam
  exact: stream ids are the order. Nothing passes it after the terminal event.
- **Slow subscribers are dropped, never waited for.** The reader only appends
  to a subscriber's bounded buffer (`subscriber_buffer` events); one that is
  full is dropped at once (`SubscriberTooSlow` from its next read; the client
  resumes from its last id), so a stalled client costs the others nothing.
  With a consumer already waiting and nothing queued, an event goes straight
  to it (one hop less: the usual case).
- **Never a silent gap.** A stream that is gone while the run is terminal
  (events expired) yields `resync` then a `done` synthesised from the run
  record, also when it expires between the look at open and the replay
  (`_end_finished`); a resume id past which the stream lost events yields
  `resync` first, then what is kept (`_open`, `missed_events`: exact on
  Redis 7, a recreated stream included; on 6.2 it may rarely be a false
  alarm, never a missed gap).
- **A replay that ends short of the live cursor** (its run's newest events
  lost in a failover between the look and the replay) sends the run's live
  feed back to where the replay ended (`EventHub._rewind_to`), so this
  subscriber gets the events when the runner puts them back.

Everything runs on the hub's event loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from relay_core import events as ev
from relay_core.events import TERMINAL_STATUSES, Event, parse_stream_id
from relay_core.fanout_errors import SubscriberTooSlow
from relay_core.fanout_stream import (
    NO_ID,
    ZERO_ID,
    Item,
    RunRecord,
    StreamId,
    StreamInfo,
    decode_or_skip,
    id_text,
    missed_events,
    transcript_url,
)
from relay_core.fanout_xread import Run

if TYPE_CHECKING:
    from relay_core.fanout import EventHub

__all__ = ["Subscription"]

log = logging.getLogger(__name__)


class Subscription:
    """One subscriber's view of a run: replay from its resume id, then the live feed.

    Iterate it (`async for event in sub`) or take what is ready in one go
    (`await sub.next_batch()`); either ends after the terminal event, raises
    `SubscriberTooSlow` if it was dropped, and ends quietly when the hub
    stops. `close()` (or leaving `async with`) detaches it at once.
    """

    __slots__ = (
        "_buf", "_closed", "_dropped", "_ended", "_hub", "_last", "_max", "_ready",
        "_record", "_replay_from", "_replay_to", "_replaying", "_run", "_stored_to",
        "_waiter", "run_id",
    )  # fmt: skip

    def __init__(self, hub: EventHub, run: Run, after: StreamId | None, buffer: int) -> None:
        self.run_id = run.run_id
        self._hub = hub
        self._run = run
        self._last: StreamId = after or NO_ID
        self._replay_from = "-" if after is None else "(" + id_text(after)
        self._replay_to = "+"  # bounded by `_open` to what the live feed does not cover
        self._replaying = True
        self._ready: deque[Event] = deque()  # due to the consumer, in order
        self._buf: deque[Item] = deque()  # the live feed, filled by the reader
        self._max = buffer
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._dropped = False
        self._closed = False
        self._record: RunRecord | None = None  # set by `_open`
        self._stored_to: StreamId = NO_ID  # the stream's last id when `_open` looked

    @property
    def last_id(self) -> str | None:
        """Id of the last stored event delivered (or the resume id)."""
        return None if self._last == NO_ID else id_text(self._last)

    @property
    def dropped(self) -> bool:
        return self._dropped

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if not self._ready:
            await self._fill()
        return self._take(1)[0]

    async def next_batch(self, limit: int = 256) -> list[Event]:
        """At least one event (waiting for it), at most `limit`."""
        if not self._ready:
            await self._fill()
        return self._take(limit)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._buf.clear()
            self._hub._detach(self)
            self._wake()

    # consumer side

    def _take(self, limit: int) -> list[Event]:
        ready = self._ready
        if len(ready) <= limit:  # the usual case: take everything
            out = list(ready)
            ready.clear()
        else:
            out = [ready.popleft() for _ in range(limit)]
        self._hub._delivered += len(out)
        return out

    async def _fill(self) -> None:
        while not self._ready:
            if self._dropped:
                raise SubscriberTooSlow(
                    f"subscriber of run {self.run_id} fell more than {self._max} events behind"
                )
            if self._ended or self._closed:
                self.close()  # nothing more for it: stop feeding it at once
                raise StopAsyncIteration
            if self._replaying:
                await self._replay_page()
            elif self._buf:
                self._take_live()
            elif self._run.finished:
                self._end_finished()
            else:
                await self._wait()

    def _end_finished(self) -> None:
        """A finished run's replay ran out: the end, or the stream expired mid-way.

        Nothing more will be stored. Short of the last id `_open` saw, without
        the terminal event, means the stream expired between that look and the
        replay (a finished stream is never trimmed): `resync`, then `done` from
        the run record, as for a stream already gone at open.
        """
        self._ended = True
        if self._last < self._stored_to and self._record is not None:
            self._expired(self._record)

    def _expired(self, run: RunRecord) -> None:
        """The run's events are gone: `resync`, then its `done` from the record."""
        self._ready.append(ev.resync("events_expired", transcript_url(run.conversation_id)))
        if run.status in TERMINAL_STATUSES:
            self._ready.append(ev.done(run.status, run.cost_usd))
        self._ended = True

    async def _wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = fut
        try:
            await fut
        finally:
            self._waiter = None

    def _wake(self) -> None:
        fut = self._waiter
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _accept(self, sid: StreamId, event: Event) -> None:
        """The one filter to the consumer: strictly newer ids only, nothing after `done`."""
        if self._ended:
            return
        if sid <= self._last:
            if event.terminal:  # the client already has the terminal event
                self._ended = True
            return
        self._last = sid
        self._ready.append(event)
        if event.terminal:
            self._ended = True

    def _take_live(self) -> None:
        while self._buf and not self._ended:
            sid, event = self._buf.popleft()
            self._accept(sid, event)
        if self._ended:
            self._buf.clear()

    async def _replay_page(self) -> None:
        page = self._hub.replay_page
        entries = await self._hub._xrange(self._run.key, self._replay_from, self._replay_to, page)
        for entry_id, fields in entries:
            self._replay_from = "(" + entry_id
            event = decode_or_skip(entry_id, fields)
            if event is not None:
                self._accept(parse_stream_id(entry_id), event)
            if self._ended:
                break
        if len(entries) < page or self._ended:
            self._replaying = False
            if not self._ended and self._replay_to != "+":
                # Bounded by the live cursor, the replay ended where the stream
                # does: short of the cursor, the events between were lost (a
                # failover) and the live feed must read them again once the
                # runner puts them back (they are past this subscriber's last).
                end = "0-0" if self._replay_from == "-" else self._replay_from.lstrip("(")
                if parse_stream_id(end) < parse_stream_id(self._replay_to):
                    self._hub._rewind_to(self._run, end)

    def _open(self, info: StreamInfo, run: RunRecord, live_from: str | None) -> None:
        """Bound the replay, and decide what comes before it: nothing, or `resync`.

        `live_from` is the run's live cursor once this subscriber was registered:
        the live feed brings everything after it, so the replay stops there
        (None: the run is finished and is replayed to its end).
        """
        self._record = run
        if info.last_id is not None:
            self._stored_to = parse_stream_id(info.last_id)
        if live_from is not None:
            self._replay_to = live_from
            upto = parse_stream_id(live_from)
            if upto == ZERO_ID or upto <= self._last:
                self._replaying = False  # nothing stored that the live feed will not bring
        url = transcript_url(run.conversation_id)
        if info.missing:
            if run.status in TERMINAL_STATUSES:
                self._expired(run)
            return
        if missed_events(info, self._last if self._last != NO_ID else None):
            self._ready.append(ev.resync("events_trimmed", url))

    # reader side

    def _push(self, item: Item) -> None:
        if self._dropped or self._closed:
            return
        if self._ready or self._buf or self._replaying:
            if len(self._buf) >= self._max:
                self._drop()
                return
            self._buf.append(item)
        else:  # the usual case, a consumer waiting: straight to it, one hop less
            self._accept(item[0], item[1])
        self._wake()

    def _drop(self) -> None:
        self._dropped = True
        self._buf.clear()
        self._ready.clear()
        self._hub._dropped += 1
        self._hub._detach(self)
        self._wake()
        log.info("dropped a subscriber too slow to keep up", extra={"run_id": self.run_id})

    def _end_by_hub(self) -> None:
        self._ended = True
        self._replaying = False
        self._wake()
