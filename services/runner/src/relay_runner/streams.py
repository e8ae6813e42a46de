"""The runner's Redis stream operations: the queue group, event writes, hand-back.

Decisions:
- Event writes are FENCED: a Lua script XADDs to `relay:events:{run}` only
  while `relay:lease:{run}` still holds this runner's `consumer:attempt`, so
  the late events of a runner presumed dead are dropped, never interleaved
  with the new attempt's. The script call is shared by the writes of every
  run of the process that wait at the same moment (`publish`); what a run
  writes up to its first token goes out at once (time to first token).
- The terminal `done` event is not written here: it is
  `relay_core.run_protocol.write_done`, unfenced (see there why), which state
  writes too for a run cancelled while queued.
- Handing a run back (shutdown) deletes our lease first, then, in one MULTI,
  enqueues a fresh entry with its `enqueued` marker (`run_protocol`, as state
  enqueues) and acks the old one, so another runner can claim it at once.
- An entry put back that names no run is acked, not queued again: every
  runner drops it anyway ("queue entry without run_id").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from relay_core import events, keys, run_protocol
from relay_core.events import Event
from relay_runner.publish import FencedPublisher
from relay_runner.rediscalls import RedisCalls

__all__ = ["Entry", "EventWriter", "Queue"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One queue entry and how many times it has been delivered."""

    id: str
    fields: dict[str, str]
    deliveries: int = 1

    @property
    def run_id(self) -> str | None:
        return self.fields.get("run_id") or None

    @property
    def traceparent(self) -> str | None:
        """The run's W3C trace context, when the writer of the entry had one."""
        return self.fields.get("traceparent") or None


class Queue:
    """The pool's queue stream, read through the `runners` group as `consumer`."""

    def __init__(
        self, redis: Redis, *, pool: str, consumer: str, calls: RedisCalls | None = None
    ) -> None:
        self.redis = redis
        self.pool = pool
        self.name = keys.queue(pool)
        self.consumer = consumer
        self._calls = calls  # acks go with the other runs' calls

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.name, keys.RUNNERS_GROUP, id="0", mkstream=True)
            log.info("consumer group created", extra={"queue": self.name})
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, blocking: Redis, *, count: int, block_ms: int) -> list[Entry]:
        got: Any = await blocking.xreadgroup(
            keys.RUNNERS_GROUP, self.consumer, {self.name: ">"}, count=count, block=block_ms
        )
        return [Entry(eid, dict(fields)) for _, items in got or [] for eid, fields in items]

    async def autoclaim(
        self, *, min_idle_ms: int, count: int, start: str
    ) -> tuple[str, list[Entry]]:
        """Entries idle longer than `min_idle_ms` (their runner died), with delivery counts."""
        reply = await self.redis.xautoclaim(
            self.name, keys.RUNNERS_GROUP, self.consumer, min_idle_ms, start_id=start, count=count
        )
        cursor, items = str(reply[0]), reply[1]
        found = [(eid, dict(fields)) for eid, fields in items if fields is not None]
        if not found:
            return cursor, []
        counts = await self._deliveries([eid for eid, _ in found])
        return cursor, [Entry(eid, fields, counts.get(eid, 1)) for eid, fields in found]

    async def _deliveries(self, entry_ids: list[str]) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for eid in entry_ids:
                pipe.xpending_range(self.name, keys.RUNNERS_GROUP, min=eid, max=eid, count=1)
            replies = await pipe.execute()
        return {
            str(row["message_id"]): int(row["times_delivered"])
            for reply in replies
            for row in reply
        }

    async def ack(self, *entry_ids: str) -> None:
        if self._calls is not None:
            await self._calls.command("XACK", self.name, keys.RUNNERS_GROUP, *entry_ids)
        else:
            await self.redis.xack(self.name, keys.RUNNERS_GROUP, *entry_ids)

    async def hand_back(
        self, entry: Entry, *, lease_value: str | None, duplicates: list[str] | None = None
    ) -> None:
        """Release the run for another runner now: drop our lease, enqueue anew, ack
        the entry (and its `duplicates`, other entries of the same run)."""
        run_id = entry.run_id
        if run_id and lease_value:
            await run_protocol.release_lease(redis=self.redis, run_id=run_id, value=lease_value)
        async with self.redis.pipeline(transaction=True) as pipe:
            self._enqueue_again(pipe, entry)
            pipe.xack(self.name, keys.RUNNERS_GROUP, entry.id, *(duplicates or []))
            await pipe.execute()

    async def requeue(self, entries: list[Entry]) -> None:
        """Put entries this runner will not start back on the queue (new entries), ack them."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for entry in entries:
                self._enqueue_again(pipe, entry)
            pipe.xack(self.name, keys.RUNNERS_GROUP, *(e.id for e in entries))
            await pipe.execute()

    def _enqueue_again(self, pipe: Pipeline, entry: Entry) -> None:
        if entry.run_id:
            run_protocol.add_queue_entry(
                pipe, run_id=entry.run_id, pool=self.pool, traceparent=entry.traceparent
            )

    async def dead_letter(self, entry: Entry, *, pool: str, reason: str) -> None:
        """A copy of the entry on the dead-letter stream (the caller acks it after `done`)."""
        fields = entry.fields | {
            "entry_id": entry.id,
            "pool": pool,
            "deliveries": str(entry.deliveries),
            "reason": reason,
        }
        await self.redis.xadd(keys.QUEUE_DEAD, dict[Any, Any](fields))


class EventWriter:
    """Writes one run's events, fenced by its lease, through the process's publisher."""

    def __init__(
        self, publisher: FencedPublisher, *, run_id: str, lease_value: str, maxlen: int
    ) -> None:
        self._publisher = publisher
        self._stream = keys.events(run_id)
        self._lease = keys.lease(run_id)
        self._value = lease_value
        self._maxlen = maxlen
        self._streaming = False  # a token was written: later writes may share a batch
        self.fenced = False

    async def write(self, event: Event) -> str | None:
        """The entry id, or None when the fence dropped it (the lease changed)."""
        fields = events.encode_fields(event)
        entry_id = await self._publisher.write(
            self._stream,
            self._lease,
            lease_value=self._value,
            maxlen=self._maxlen,
            event_type=fields["event"],
            data=fields["data"],
            urgent=not self._streaming,
        )
        if entry_id is None:
            self.fenced = True
            return None
        if event.type == "token":
            self._streaming = True
        return entry_id
