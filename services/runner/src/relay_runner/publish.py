"""Fenced event writes of every run in this process, coalesced into few round trips.

Why: a streaming run writes one event per token. One script call (EVALSHA)
per token made every token cost this process a Redis round trip of its own
(a socket write, a wake-up, a reply to parse, a pooled connection to take and
give back), and that was most of the runner's CPU per run. Here the writes
that are waiting at the same moment, from every run of the process, go out in
ONE script call that writes them all.

Decisions:
- The fence is unchanged, and per event: the script checks each event's
  lease (`consumer:attempt`) right before its XADD, atomically with it, so a
  stale runner's late events are dropped one by one, never interleaved with a
  newer attempt's. Every event is still its own stream entry, and a run's
  events keep their order: a run never has two writes waiting (the execution
  awaits each write before the next), and a batch writes in arrival order.
- No timer by default: a write goes out at once when no batch is in flight;
  the writes that arrive while one is in flight go together in the next one,
  sent as soon as it returns. Batches grow with the load, and an idle process
  adds no delay at all. `linger_s` (`RELAY_EVENT_LINGER_S`) makes a write
  that finds no batch in flight wait that long for company: fewer calls at a
  low rate of writes, for a few ms more per token. An `urgent` write
  (everything a run writes up to its first token, which is on the
  time-to-first-token path) goes out at once in any case.
- One call writes the keys of many runs: on a plain Redis, every run waiting
  at that moment; on a Redis Cluster, where a script must stay in one slot,
  the runs of one partition (a run's stream and lease share its partition's
  tag), the calls of every partition in one pipeline (`_deliver`: one round
  trip per node, in parallel; counted as one call).
- Each write may carry the id its stream must still end with (`expected`,
  the run's last event: `relay_runner.eventlog`); the script then appends
  only if it does, and answers the stream's tail otherwise (`StreamTail`),
  which is how a writer sees events a failover lost, or its own write that
  landed although the reply did not. `restore` puts lost events back with
  their own ids.
- Failures stay per write: an XADD that fails inside the script (pcall) fails
  only its own write; a call that fails as a whole (connection lost,
  timeout) fails every write in it, and each run retries its own, as a
  single write did before. A write whose caller was cancelled before its
  batch went out is not sent.
- At most `MAX_BATCH` events per call, so one script never holds Redis for
  long.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from relay_core.redis import is_cluster
from relay_core.run_protocol import TAIL_CHECK, StreamTail, stream_tail
from relay_runner import metrics

__all__ = ["FENCED_XADD_BATCH", "MAX_BATCH", "RESTORE_EVENTS", "FencedPublisher", "Written"]

# KEYS: per event, its events stream and its run's lease. ARGV: per event, the
# lease value, maxlen, event type, data, the id the stream must end with ("" no
# check). Per event: the entry id, nil when fenced, the stream's tail when it
# does not end as expected (TAIL_CHECK), or the XADD's error.
FENCED_XADD_BATCH = (
    TAIL_CHECK
    + """
local out = {}
for i = 1, #KEYS / 2 do
  local a = (i - 1) * 5
  if redis.call('GET', KEYS[2 * i]) ~= ARGV[a + 1] then
    out[i] = false
  else
    out[i] = tail_moved(KEYS[2 * i - 1], ARGV[a + 5]) or
      redis.pcall('XADD', KEYS[2 * i - 1], 'MAXLEN', '~', ARGV[a + 2], '*',
                  'event', ARGV[a + 3], 'data', ARGV[a + 4])
  end
end
return out
"""
)

# KEYS: events stream, lease. ARGV: lease value ("" unfenced: the run's `done`,
# written after its lease went), maxlen, the id the stream must end with ("" for
# none: missing or empty), then id, event type, data per event to put back.
# 1 restored, 0 fenced, -1 the stream's tail moved meanwhile.
RESTORE_EVENTS = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if (last and last[1] or '') ~= ARGV[3] then return -1 end
for i = 4, #ARGV, 3 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], ARGV[i],
             'event', ARGV[i + 1], 'data', ARGV[i + 2])
end
return 1
"""

MAX_BATCH = 256

# What a write comes back with: the entry id, None when the fence dropped it,
# or the stream's tail when it did not end with the expected id.
Written: TypeAlias = str | StreamTail | None


@dataclass(slots=True)
class _Write:
    keys: tuple[str, str]  # events stream, lease
    args: tuple[str, int, str, str, str]  # lease value, maxlen, event type, data, expected
    batch: int  # writes of one batch may share a script call (one slot on a cluster)
    future: asyncio.Future[Written]


class FencedPublisher:
    """One per process: `write` stores one event if the lease still matches."""

    def __init__(
        self, redis: Redis, *, pool: str, linger_s: float = 0.0, max_batch: int = MAX_BATCH
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(FENCED_XADD_BATCH)
        self._restore = redis.register_script(RESTORE_EVENTS)
        self._cluster = is_cluster(redis)
        self._calls_metric = metrics.EVENT_WRITE_CALLS.labels(pool)
        self._writes_metric = metrics.EVENT_WRITES.labels(pool)
        self._linger_s = linger_s
        self._max_batch = max_batch
        self._queue: list[_Write] = []
        self._busy = False  # a batch is in flight, or waiting to go
        self._flusher: asyncio.Task[None] | None = None
        self.calls = 0  # script calls made (tests read them; /metrics has them too)
        self.writes = 0

    async def write(
        self,
        stream: str,
        lease: str,
        *,
        lease_value: str,
        maxlen: int,
        event_type: str,
        data: str,
        partition: int,
        expected: str | None = None,
        urgent: bool = False,
    ) -> Written:
        """The entry id; None when the fence dropped the event (the lease changed);
        the stream's tail when `expected` is given and the stream does not end there."""
        write = _Write(
            (stream, lease),
            (lease_value, maxlen, event_type, data, expected or ""),
            partition if self._cluster else 0,
            asyncio.get_running_loop().create_future(),
        )
        if urgent:
            (result,) = await self._call([write])
        elif self._busy or self._linger_s > 0:
            self._queue.append(write)
            if not self._busy:
                self._start_flusher(linger=True)
            return await write.future
        else:  # idle, no linger: this write is the batch, sent at once
            self._busy = True
            try:
                (result,) = await self._call([write])
            finally:
                self._done_calling()
        if isinstance(result, Exception):
            raise result
        return result

    async def restore(
        self,
        stream: str,
        lease: str,
        *,
        lease_value: str | None,
        maxlen: int,
        expected: str | None,
        entries: Sequence[tuple[str, str, str]],
    ) -> int:
        """Put lost events back with their own ids (`RESTORE_EVENTS`): 1 done, 0
        fenced, -1 the stream's tail is no longer `expected`."""
        args: list[str | int] = [lease_value or "", maxlen, expected or ""]
        for entry in entries:
            args += entry
        return int(await self._restore(keys=[stream, lease], args=args))

    async def aclose(self) -> None:
        """Stop the flusher; writes still waiting fail (the runs are gone by then)."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        self._fail(self._queue)  # a flusher cancelled before it started left them
        self._busy = False

    def _done_calling(self) -> None:
        """After a call: send what queued up meanwhile, or become idle."""
        if self._queue:
            self._start_flusher(linger=False)
        else:
            self._busy = False

    def _start_flusher(self, *, linger: bool) -> None:
        self._busy = True
        # A fresh context: the flusher serves every run, it belongs to none
        # (the creating task's run_id would otherwise tag its logs).
        self._flusher = asyncio.create_task(self._flush(linger), context=contextvars.Context())

    async def _flush(self, linger: bool) -> None:
        batch: list[_Write] = []
        try:
            if linger:
                await asyncio.sleep(self._linger_s)
            while self._queue:
                batch = [w for w in self._queue if not w.future.done()]
                self._queue.clear()
                groups: dict[int, list[_Write]] = {}
                for w in batch:
                    groups.setdefault(w.batch, []).append(w)
                calls = [
                    group[i : i + self._max_batch]
                    for group in groups.values()
                    for i in range(0, len(group), self._max_batch)
                ]
                await self._deliver(calls)
                batch = []
        finally:
            self._busy = False
            self._flusher = None
            self._fail([*batch, *self._queue])  # left over only when cancelled (closing)

    def _fail(self, writes: list[_Write]) -> None:
        for w in writes:
            if not w.future.done():
                w.future.set_exception(RedisConnectionError("the publisher was closed"))
        self._queue.clear()

    async def _deliver(self, calls: list[list[_Write]]) -> None:
        """One round trip for every call of a flush: a script call, or on a cluster
        a pipeline of one per partition (one round trip per node, in parallel)."""
        try:
            if len(calls) == 1:
                replies: list[Any] = [await self._call(calls[0])]
            else:
                replies = await self._pipelined(calls)
        except Exception as exc:
            replies = [exc] * len(calls)
        for batch, reply in zip(calls, replies, strict=True):
            for i, w in enumerate(batch):
                if w.future.done():
                    continue
                result = reply if isinstance(reply, Exception) else reply[i]
                if isinstance(result, Exception):
                    w.future.set_exception(result)
                else:
                    w.future.set_result(result)

    def _count(self, calls: list[list[_Write]]) -> None:
        writes = sum(len(batch) for batch in calls)
        self.calls += 1
        self.writes += writes
        self._calls_metric.inc()
        self._writes_metric.inc(writes)

    async def _call(self, batch: list[_Write]) -> list[Written | ResponseError]:
        keys, args = _keys_and_args(batch)
        self._count([batch])
        reply = await self._script(keys=keys, args=args)
        return [_result(r) for r in reply]

    async def _pipelined(self, calls: list[list[_Write]]) -> list[Any]:
        self._count(calls)
        async with self._redis.pipeline(transaction=False) as pipe:
            for batch in calls:
                keys, args = _keys_and_args(batch)
                # EVAL by name: the cluster pipeline routes it by its keys
                pipe.execute_command("EVAL", FENCED_XADD_BATCH, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
        return [r if isinstance(r, Exception) else [_result(x) for x in r] for r in replies]


def _keys_and_args(batch: list[_Write]) -> tuple[list[str], list[str | int]]:
    keys: list[str] = []
    args: list[str | int] = []
    for w in batch:
        keys += w.keys
        args += w.args
    return keys, args


def _result(reply: object) -> Written | ResponseError:
    if reply is None or isinstance(reply, ResponseError):
        return reply
    return stream_tail(reply) or str(reply)
