"""The runner's side of its pool's queue: one stream per partition, read fairly.

A pool's queue is one stream per partition (`relay_core.keys.queue`): a
run's entry goes to its partition's stream, which shares the run's hash tag
(on a Redis Cluster the whole queue is spread over the shards, and the
lease heartbeat's script, over the lease and the entry, stays in one slot).
Every partition has its own `runners` group.

Decisions:
- **Reading: a sweep, then the doorbell.** One blocking read cannot span
  slots, and blocking on every partition at once would take a connection
  per partition per runner; reading several streams in one XREADGROUP
  takes COUNT entries from EACH, more than the free slots. So `read` asks
  the partitions one by one, without blocking, for what is still missing of
  `count`, starting each sweep one partition further than the last: no
  partition waits more than one turn, and a hot partition's backlog delays
  the others by at most one read each (claim latency stays flat). When the
  sweep finds nothing, the runner blocks on the pool's doorbell
  (`keys.queue_bell`: every enqueue XADDs its partition there,
  `run_protocol.ring`) and reads the partitions that rang. The doorbell's
  cursor is taken before the sweep, so a ring during the sweep is not
  missed; a ring that is lost only delays the entry to the next sweep (one
  per `block_ms` while idle). Every idle runner wakes on a ring and one of
  them gets the entry: one cheap read per idle runner per enqueue. The same
  code runs on a plain Redis (one code path).
- Dead runners' entries: `autoclaim` runs XAUTOCLAIM on every partition,
  each with its own cursor.
- Handing a run back (shutdown) deletes our lease first, then, in one MULTI
  on the run's partition, enqueues a fresh entry with its `enqueued` marker
  (`run_protocol`, as state enqueues) and acks the old one, so another runner
  can claim it at once. An entry put back that names no run is acked, not
  queued again: every runner drops it anyway ("queue entry without run_id").
- The partition count is recorded in Redis by the first runner
  (`keys.LAYOUT`); a runner configured for another count refuses to read
  (`LayoutMismatch`): it would miss the partitions the others write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from relay_core import keys, partitions, run_protocol
from relay_core.rediscalls import RedisCalls

__all__ = ["Entry", "LayoutMismatch", "Queue"]

log = logging.getLogger(__name__)

BELL_READ = 100  # doorbell rings read at once


class LayoutMismatch(Exception):
    """The queues in Redis are laid out for another partition count."""


@dataclass(frozen=True)
class Entry:
    """One queue entry, the stream it was read from, and how often it was delivered."""

    id: str
    fields: dict[str, str]
    deliveries: int = 1
    stream: str = ""

    @property
    def run_id(self) -> str | None:
        return self.fields.get("run_id") or None

    @property
    def traceparent(self) -> str | None:
        """The run's W3C trace context, when the writer of the entry had one."""
        return self.fields.get("traceparent") or None


class Queue:
    """A pool's queue streams, read through their `runners` groups as `consumer`."""

    def __init__(
        self, redis: Redis, *, pool: str, consumer: str, calls: RedisCalls | None = None
    ) -> None:
        self.redis = redis
        self.pool = pool
        self.consumer = consumer
        self._calls = calls  # acks go with the other runs' calls
        self.bell = keys.queue_bell(pool)
        self._bell_cursor: str | None = None
        self._next = 0  # the partition the next sweep starts with
        self._autoclaim_cursors: dict[int, str] = {}

    def stream(self, partition: int) -> str:
        return keys.queue(self.pool, partition)

    @property
    def streams(self) -> list[str]:
        return [self.stream(p) for p in range(partitions.count())]

    async def ensure_group(self) -> None:
        """Check the layout, and create every partition's group (and stream)."""
        count = partitions.count()
        await self.redis.set(keys.LAYOUT, count, nx=True)
        recorded: Any = await self.redis.get(keys.LAYOUT)
        if str(recorded) != str(count):
            raise LayoutMismatch(
                f"the queues are laid out for {recorded} partitions, this runner for {count} "
                "(RELAY_REDIS_PARTITIONS must be the same everywhere: docs/design.md)"
            )
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in self.streams:
                pipe.xgroup_create(name, keys.RUNNERS_GROUP, id="0", mkstream=True)
            results = await pipe.execute(raise_on_error=False)
        errors = [r for r in results if isinstance(r, Exception) and "BUSYGROUP" not in str(r)]
        if errors:
            raise errors[0]
        if any(r is True for r in results):
            log.info("consumer groups created", extra={"pool": self.pool})

    # reading

    async def read(self, blocking: Redis, *, count: int, block_ms: int) -> list[Entry]:
        """Up to `count` new entries: a sweep of every partition, then, while it
        finds nothing, the doorbell (on `blocking`) for up to `block_ms`."""
        if self._bell_cursor is None:
            self._bell_cursor = await self._bell_tail()
        n = partitions.count()
        start, self._next = self._next % n, (self._next + 1) % n
        got = await self._sweep([(start + i) % n for i in range(n)], count)
        deadline = time.monotonic() + block_ms / 1000
        while not got:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            rung = await self._wait_bell(blocking, left_ms)
            if rung:
                got = await self._sweep(rung, count)
        return got

    async def _sweep(self, order: Iterable[int], count: int) -> list[Entry]:
        got: list[Entry] = []
        for partition in order:
            name = self.stream(partition)
            reply: Any = await self.redis.xreadgroup(
                keys.RUNNERS_GROUP, self.consumer, {name: ">"}, count=count - len(got)
            )
            got += [
                Entry(eid, dict(f), stream=name) for _, items in reply or [] for eid, f in items
            ]
            if len(got) >= count:
                break
        return got

    async def _bell_tail(self) -> str:
        last: Any = await self.redis.xrevrange(self.bell, count=1)
        return str(last[0][0]) if last else "0-0"

    async def _wait_bell(self, blocking: Redis, block_ms: int) -> list[int]:
        """The partitions rung after the cursor (waiting up to `block_ms`)."""
        reply: Any = await blocking.xread(
            {self.bell: self._bell_cursor or "0-0"}, count=BELL_READ, block=max(1, block_ms)
        )
        rung: list[int] = []
        for _, items in reply or []:
            for eid, fields in items:
                self._bell_cursor = eid
                partition = int(fields.get("p", -1))
                if 0 <= partition < partitions.count() and partition not in rung:
                    rung.append(partition)
        return rung

    async def autoclaim(self, *, min_idle_ms: int, count: int) -> list[Entry]:
        """Entries idle longer than `min_idle_ms` (their runner died), with
        delivery counts, from every partition in turn (up to `count`)."""
        found: list[Entry] = []
        for partition in range(partitions.count()):
            name = self.stream(partition)
            reply = await self.redis.xautoclaim(
                name,
                keys.RUNNERS_GROUP,
                self.consumer,
                min_idle_ms,
                start_id=self._autoclaim_cursors.get(partition, "0-0"),
                count=count - len(found),
            )
            self._autoclaim_cursors[partition] = str(reply[0])
            found += [Entry(eid, dict(f), stream=name) for eid, f in reply[1] if f is not None]
            if len(found) >= count:
                break
        if not found:
            return []
        counts = await self._deliveries(found)
        return [Entry(e.id, e.fields, counts.get(e.id, 1), e.stream) for e in found]

    async def _deliveries(self, entries: list[Entry]) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for e in entries:
                pipe.xpending_range(e.stream, keys.RUNNERS_GROUP, min=e.id, max=e.id, count=1)
            replies = await pipe.execute()
        return {
            str(row["message_id"]): int(row["times_delivered"])
            for reply in replies
            for row in reply
        }

    # acking, putting back

    async def ack(self, stream: str, *entry_ids: str) -> None:
        if self._calls is not None:
            await self._calls.command("XACK", stream, keys.RUNNERS_GROUP, *entry_ids)
        else:
            await self.redis.xack(stream, keys.RUNNERS_GROUP, *entry_ids)

    async def hand_back(
        self, entry: Entry, *, lease_value: str | None, duplicates: list[str] | None = None
    ) -> None:
        """Release the run for another runner now: drop our lease, enqueue anew, ack
        the entry (and its `duplicates`, other entries of the same run)."""
        run_id = entry.run_id
        if run_id and lease_value:
            await run_protocol.release_lease(redis=self.redis, run_id=run_id, value=lease_value)
        await self._put_back(entry, [entry.id, *(duplicates or [])])

    async def requeue(self, entries: list[Entry]) -> None:
        """Put entries this runner will not start back on the queue (new entries), ack them."""
        for entry in entries:
            await self._put_back(entry, [entry.id])

    async def _put_back(self, entry: Entry, acked: list[str]) -> None:
        """A fresh entry for the run and the old ones acked: one MULTI when they share
        a partition (always, but for an entry laid out for another count)."""
        run_id = entry.run_id
        if run_id and keys.run_queue(self.pool, run_id) != entry.stream:
            await run_protocol.enqueue(
                redis=self.redis, run_id=run_id, pool=self.pool, traceparent=entry.traceparent
            )
            await self.ack(entry.stream, *acked)
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            if run_id:
                run_protocol.add_queue_entry(
                    pipe, run_id=run_id, pool=self.pool, traceparent=entry.traceparent
                )
            pipe.xack(entry.stream, keys.RUNNERS_GROUP, *acked)
            await pipe.execute()
        if run_id:
            await run_protocol.ring(redis=self.redis, pool=self.pool, run_ids=[run_id])

    async def dead_letter(self, entry: Entry, *, pool: str, reason: str) -> None:
        """A copy of the entry on the dead-letter stream (the caller acks it after `done`)."""
        fields = entry.fields | {
            "entry_id": entry.id,
            "pool": pool,
            "stream": entry.stream,
            "deliveries": str(entry.deliveries),
            "reason": reason,
        }
        await self.redis.xadd(keys.QUEUE_DEAD, dict[Any, Any](fields))
