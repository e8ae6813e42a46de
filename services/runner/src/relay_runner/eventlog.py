"""One run's event log as its runner writes it: fenced, in order, and whole after a failover.

Decisions:
- Event writes are FENCED: `relay_runner.publish` XADDs to the run's stream
  only while its lease still holds this runner's `consumer:attempt`, so the
  late events of a runner presumed dead are dropped, never interleaved with
  the new attempt's. What a run writes up to its first token goes out at
  once (time to first token); later writes may share a script call with
  other runs'.
- **Appends are checked against the last id this attempt wrote.** Redis
  replicates asynchronously: when a primary dies, its replica may be
  promoted without the last events the runner wrote (and a client may
  already have seen them, read from the old primary). So every write after
  the attempt's first names the id the stream must still end with; when it
  does not, the script writes nothing and answers the stream's tail:
  - the tail is our own write, one entry past the expected id with the same
    event (a retry of a write whose reply was lost): that is its id, and
    nothing is written twice;
  - the tail is older than the expected id (or the stream is gone): the
    store lost our last events. They are put back (`restore`) with their
    OWN ids, then the write goes on. A client that saw them, or not, then
    resumes with `Last-Event-ID` onto exactly the stream it would have had:
    no gap, no duplicate. This keeps the last `RESTORE_WINDOW` events of
    the attempt (a failover loses the last milliseconds of writes); events
    older than the attempt were written at least a lease TTL earlier, far
    longer than any replication lag, and are taken as kept;
  - anything else (a tail newer than ours that is not ours, or lost events
    older than the window): the attempt cannot vouch for its stream any
    more. `EventsLost` makes the execution hand the run back, and the next
    attempt announces itself with `resumed` from its last checkpoint (a
    tool whose result was checkpointed never runs again).
- The terminal `done` (`relay_core.run_protocol.write_done`, unfenced since
  state already accepted the finish and released the lease) goes through
  `write_done` here for the same check: a `done` already at the tail is
  ours; lost events are put back, unfenced, before it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable

from relay_core import events, keys, partitions
from relay_core.events import Event, parse_stream_id
from relay_core.run_protocol import StreamTail
from relay_runner.publish import FencedPublisher

__all__ = ["RESTORE_WINDOW", "EventWriter", "EventsLost"]

log = logging.getLogger(__name__)

RESTORE_WINDOW = 256  # events of an attempt kept to put back after a failover
_REPAIRS = 3  # restores in a row before giving up (the tail keeps moving)


class EventsLost(Exception):
    """The run's stream lost events this attempt cannot put back."""


class _Fenced(Exception):
    """The lease changed while lost events were put back."""


def _older(tail: str | None, than: str) -> bool:
    return tail is None or parse_stream_id(tail) < parse_stream_id(than)


class EventWriter:
    """Writes one run's events, fenced by its lease, through the process's publisher."""

    def __init__(
        self, publisher: FencedPublisher, *, run_id: str, lease_value: str, maxlen: int
    ) -> None:
        self._publisher = publisher
        self._run_id = run_id
        self._stream = keys.events(run_id)
        self._lease = keys.lease(run_id)
        self._partition = partitions.of(run_id)
        self._value = lease_value
        self._maxlen = maxlen
        self._streaming = False  # a token was written: later writes may share a batch
        self._written: deque[tuple[str, str, str]] = deque(maxlen=RESTORE_WINDOW)
        self._floor: str | None = None  # the newest id no longer kept (None: all kept)
        self.last_id: str | None = None  # the last id this attempt wrote
        self.fenced = False

    async def write(self, event: Event) -> str | None:
        """The entry id, or None when the fence dropped it (the lease changed).
        Raises `EventsLost` when the stream lost events it cannot put back."""
        fields = events.encode_fields(event)
        for _ in range(_REPAIRS):
            result = await self._publisher.write(
                self._stream,
                self._lease,
                lease_value=self._value,
                maxlen=self._maxlen,
                event_type=fields["event"],
                data=fields["data"],
                partition=self._partition,
                expected=self.last_id,
                urgent=not self._streaming,
            )
            if isinstance(result, StreamTail):
                try:
                    landed = await self._repair(
                        result, fields["event"], fields["data"], fenced=True
                    )
                except _Fenced:
                    result = None
                else:
                    if landed is None:
                        continue
                    result = landed
            if result is None:
                self.fenced = True
                return None
            self._remember(result, fields["event"], fields["data"])
            if event.type == "token":
                self._streaming = True
            return result
        raise EventsLost("the stream's tail kept moving while events were put back")

    async def write_done(self, write: Callable[[str | None], Awaitable[str | StreamTail]]) -> None:
        """The `done` write (`write(after_id)`: `run_protocol.write_done`), after
        the events a failover lost are put back."""
        for _ in range(_REPAIRS):
            result = await write(self.last_id)
            if not isinstance(result, StreamTail):
                return
            if await self._repair(result, "done", None, fenced=False) is not None:
                return
        raise EventsLost("the stream's tail kept moving while events were put back")

    def _remember(self, entry_id: str, event_type: str, data: str) -> None:
        if len(self._written) == self._written.maxlen:
            self._floor = self._written[0][0]
        self._written.append((entry_id, event_type, data))
        self.last_id = entry_id

    async def _repair(
        self, tail: StreamTail, event_type: str, data: str | None, *, fenced: bool
    ) -> str | None:
        """After a tail check failed: the id of our own write if it had landed;
        None once lost events are put back (write again); raises `EventsLost`."""
        expected = self.last_id or "0-0"
        if not _older(tail.last_id, expected):
            if tail.event == event_type and (data is None or tail.data == data):
                return tail.last_id  # our write landed; its reply did not
            raise EventsLost(f"the stream ends with {tail.last_id}, not this attempt's write")
        if self._floor is not None and _older(tail.last_id, self._floor):
            raise EventsLost(f"more than {RESTORE_WINDOW} events were lost")
        lost = [e for e in self._written if not _older(e[0], tail.last_id or "0-0")]
        lost = [e for e in lost if e[0] != tail.last_id]
        log.warning(
            "the run's stream lost its last events (a failover?); putting them back",
            extra={"run_id": self._run_id, "events": len(lost), "tail": tail.last_id},
        )
        done = await self._publisher.restore(
            self._stream,
            self._lease,
            lease_value=self._value if fenced else None,
            maxlen=self._maxlen,
            expected=tail.last_id,
            entries=lost,
        )
        if done == 0:
            raise _Fenced
        return None
