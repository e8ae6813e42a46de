"""Fan-out of run events from Redis streams to many subscribers in one process.

`EventHub` is the engine behind the events service's `GET /v1/runs/{id}/events`
and the gateway's interactive stream: one hub per process, any number of
`Subscription`s, each an async iterator of `relay_core.events.Event` that ends
after the run's terminal event (`done`).

    hub = EventHub(redis_url, max_connections=16, subscriber_buffer=1000)
    await hub.start()              # in the lifespan; Redis may be down
    sub = await hub.subscribe(run_id, after_id=last_event_id, run=run_record)
    async with sub:                # ValueError: bad id; HubUnavailable: 503
        async for event in sub:    # ends after `done`; SubscriberTooSlow if dropped
            ...
    hub.drain()                    # on SIGTERM: every stream ends cleanly
    await hub.stop()

`relay_core.sse.stream_events(sub)` turns a subscription into SSE chunks.

This module is the engine's public surface (import every name from here) and
the hub itself; the rest lives next to it, each with its own design notes:

- `fanout_subscription`: `Subscription`, the consumer side and its replay
  (the no-gap filter, dropping slow subscribers, `resync` for expired/trimmed
  streams);
- `fanout_reader`: the readers, one multiplexed `XREAD BLOCK` per partition
  batch (every partition on a plain Redis, one per partition on a Redis
  Cluster, where a blocking read cannot span slots), and the per-event path;
- `fanout_xread`: each run's per-process state and a reader's `XREAD`,
  assembled from RESP pieces;
- `fanout_stream`: stream and resume ids, `RunRecord`, entry decoding;
- `fanout_errors`: the errors a subscriber can see.

Design decisions of the hub, and why:

- **One multiplexed reader per batch, a bounded number of Redis connections.**
  A task issues `XREAD BLOCK` over every run stream of its batch that has at
  least one subscriber here, on one dedicated connection; each run's cursor
  is kept once per process (not per client) and each entry read is decoded
  once and fanned out to every subscriber of that run. On a plain Redis there
  is one batch (one reader); on a cluster one per partition with followed
  runs, so at most `RELAY_REDIS_PARTITIONS` readers (`fanout_reader`).
  Everything else (stream inspection, replays, wake-ups) shares a *blocking*
  pool of `max_connections - 1` connections (per node on a cluster), so the
  total stays at `max_connections` (16 by default) on a plain Redis whether
  there are ten subscribers or ten thousand: a burst of new subscribers
  queues for a pooled connection instead of opening more.
- **No gap, no duplicate.** A subscriber registers for the live feed *before*
  it looks at the stream, and the run's live cursor is fixed by an `XINFO
  STREAM` issued after the first subscriber registered. The live feed brings
  everything after the cursor the subscriber found once registered; its
  replay (`XRANGE (after_id cursor`, skipped when empty) brings the rest. The
  two overlap at most, and the subscription's one filter (strictly newer ids
  only, `fanout_subscription`) makes the seam exact.
- **Waking the reader.** A new run must join its reader's `XREAD` without
  waiting out its block timeout: the reader also blocks on a wake stream of
  its own (`keys.events_wake`), and activating a run XADDs to it (coalesced;
  skipped when the reader already has the run). Unlike short polling blocks
  (10 ms blocks re-send every key 100 times a second even when idle, 5000
  keys is ~0.5 MB/s of commands per idle process) a wake costs one XADD per new
  run, cannot be lost (an XADD that lands before the XREAD is seen by it), and
  works on any Redis >= 5 without admin commands (`CLIENT UNBLOCK` needs
  `@admin` in ACL setups). Measured here (bench/fanout.py, `wake`): a new
  run's first event reaches its subscriber in 2 ms (p50), 8 ms (p99) while
  2,000 other runs are followed.
- **The per-event path stays in one place.** `BatchReader._dispatch` ->
  `_fan_out` -> `Subscription._push` is the hot path (21,000 events/s in
  bench/fanout.py): it calls the subscription's methods directly, with no
  layer in between.
- **The process's garbage collector.** With ten thousand subscribers the heap
  holds hundreds of thousands of long-lived objects, and CPython's default
  thresholds stop the loop for 60-190 ms every second or two under load: a
  process hosting a hub calls `relay_core.gctune.tune_gc()` at start-up.
- **A stream that lost its newest events** (a failover to a replica that had
  not received them) is found by the next subscriber's look at it: its end
  is before the run's live cursor. The cursor goes back to the stream's end
  (`_rewind_if_behind`, `BatchReader.rewind`), so the events the runner puts
  back (with their own ids) reach the subscribers that missed them.
- **Redis restarts, cluster failovers.** A reader reconnects with capped
  exponential backoff (to the node that owns its partition now, on a
  cluster) and resumes every run from its cursor; replays retry the same
  way (redis-py's cluster client refreshes its slot map by itself). Only
  `subscribe()` fails fast (`HubUnavailable`) so a service can answer 503
  before it starts streaming.

Everything runs on one event loop; the hub is not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import AskError, ClusterDownError, RedisError, ResponseError, TryAgainError

from relay_core import partitions
from relay_core.events import TERMINAL_EVENTS, parse_stream_id
from relay_core.fanout_errors import FanoutError, HubUnavailable, SubscriberTooSlow
from relay_core.fanout_reader import BatchReader, backoff_s, reraise_if_cancelled
from relay_core.fanout_stream import (
    RunRecord,
    StreamInfo,
    parse_after_id,
    transcript_url,
)
from relay_core.fanout_subscription import Subscription
from relay_core.fanout_xread import Run
from relay_core.redis import create_redis, is_cluster, open_connections

__all__ = [
    "EventHub",
    "FanoutError",
    "HubStats",
    "HubUnavailable",
    "RunRecord",
    "SubscriberTooSlow",
    "Subscription",
    "parse_after_id",
    "transcript_url",
]

log = logging.getLogger(__name__)

# What a cluster answers while a shard fails over: try again, never a short replay.
TRANSIENT_REFUSALS = (ClusterDownError, TryAgainError, AskError)


@dataclass(frozen=True, slots=True)
class HubStats:
    subscribers: int  # subscriptions open now
    runs: int  # runs with at least one subscriber
    live_runs: int  # runs the reader follows now
    delivered: int  # events handed to subscribers since start (replay included)
    dropped: int  # subscribers dropped as too slow since start
    redis_connections: int  # connections the hub holds (readers + pool)
    reader_connected: bool  # every reader is connected
    readers: int = 1  # partition batches read (1 on a plain Redis)


class EventHub:
    """One per process: `await start()`, `await subscribe(...)`, `await stop()`.

    `max_connections` bounds the Redis connections of the command pool plus
    one reader (on a cluster: the pool's, per node, plus one reader per
    partition with followed runs). `subscriber_buffer` is how many live
    events a subscriber may fall behind before it is dropped. `mode` is
    `RELAY_REDIS_MODE` (`relay_core.redis`).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        max_connections: int = 16,
        subscriber_buffer: int = 1000,
        block_s: float = 5.0,
        read_count: int = 500,
        replay_page: int = 500,
        timeout_s: float = 2.0,
        client_name: str = "relay-fanout",
        mode: str = "auto",
    ) -> None:
        if max_connections < 2:
            raise ValueError("max_connections must be at least 2 (a reader and a command)")
        self.hub_id = uuid.uuid4().hex[:12]
        self.client_name = f"{client_name}-{self.hub_id}"
        self.replay_page = replay_page
        self._url = redis_url
        self._mode = mode
        self._max_connections = max_connections
        self._buffer = subscriber_buffer
        self._block_ms = int(block_s * 1000)
        # XREAD's COUNT is per stream: one read may hand a run's subscriber up to
        # this many events at once, so it never exceeds the buffer (a subscriber
        # that keeps up is never dropped by a read larger than its buffer).
        self._read_count = min(read_count, subscriber_buffer)
        self._timeout_s = timeout_s
        self._common: dict[str, Any] = {
            "decode_responses": True,
            "protocol": 2,  # the reply shapes the readers parse, whatever redis-py's default
            "socket_connect_timeout": self._timeout_s,
            "client_name": self.client_name,
        }
        self._runs: dict[str, Run] = {}
        self._readers: dict[int, BatchReader] = {}
        self._subscribers = 0
        self._delivered = 0
        self._dropped = 0
        self._cmd: Redis | None = None
        self._cluster = False
        self._running = False

    # lifecycle

    async def start(self) -> None:
        """Create the command client; readers start with their first run. Never
        fails when Redis is down."""
        self._cmd = create_redis(
            self._url,
            timeout_s=self._timeout_s,
            max_connections=self._max_connections - 1,
            mode=self._mode,
            client_name=self.client_name,
            # a burst of new subscribers queues for a connection; only a pool
            # that stays exhausted this long (Redis alive but stuck) is an error
            pool_wait_s=max(15.0, self._timeout_s),
            protocol=2,
        )
        self._cluster = is_cluster(self._cmd)
        self._running = True
        self._reader(0)  # the plain server's one reader (a cluster's partition 0)

    def drain(self) -> None:
        """End every subscription quietly and refuse new ones (shutting down).

        Ended streams finish cleanly; their clients reconnect elsewhere with
        their last id.
        """
        self._running = False
        for run in list(self._runs.values()):
            for sub in list(run.subs):
                sub._end_by_hub()

    async def stop(self) -> None:
        """Drain, stop the readers, close the connections."""
        self.drain()
        for reader in list(self._readers.values()):
            await reader.stop()
        if self._cmd is not None:
            with contextlib.suppress(TimeoutError, RedisError, OSError):
                async with asyncio.timeout(self._timeout_s):
                    wakes = [reader.wake_key for reader in self._readers.values()]
                    async with self._cmd.pipeline(transaction=False) as pipe:
                        for key in wakes:
                            pipe.delete(key)
                        await pipe.execute()
            with contextlib.suppress(RedisError, OSError):
                await self._cmd.aclose()
        self._cmd = None
        self._readers.clear()

    async def ping(self) -> bool:
        """Whether Redis answers (for readiness)."""
        if self._cmd is None:
            return False
        try:
            async with asyncio.timeout(self._timeout_s):
                return bool(await self._cmd.ping())
        except (TimeoutError, RedisError, OSError):
            return False

    def stats(self) -> HubStats:
        readers = list(self._readers.values())
        conns = sum(1 for reader in readers if reader.connected)
        if self._cmd is not None:
            conns += open_connections(self._cmd)
        return HubStats(
            subscribers=self._subscribers,
            runs=len(self._runs),
            live_runs=sum(len(reader.live) for reader in readers),
            delivered=self._delivered,
            dropped=self._dropped,
            redis_connections=conns,
            reader_connected=bool(readers) and all(reader.ok for reader in readers),
            readers=len(readers),
        )

    def _batch_of(self, run_id: str) -> int:
        """Every run in one batch on a plain Redis; a batch per partition on a cluster."""
        return partitions.of(run_id) if self._cluster else 0

    def _reader(self, batch: int) -> BatchReader:
        reader = self._readers.get(batch)
        if reader is None:
            reader = self._readers[batch] = BatchReader(self, batch)
            reader.start()
        return reader

    # subscribing

    async def subscribe(
        self, run_id: str, *, after_id: str | None = None, run: RunRecord, fresh: bool = False
    ) -> Subscription:
        """Open a subscription to `run_id`'s events after `after_id` (exclusive).

        `run` is the run's record (the caller has fetched it for the owner
        check): it decides what an expired stream means. `fresh`: the caller
        created the run a moment ago (the gateway's interactive stream), so its
        stream holds nothing but what was written since, and the live feed
        starts at its beginning without looking at it first (no `XINFO
        STREAM`, one Redis call less per chat). Raises ValueError for a
        malformed `after_id` and `HubUnavailable` when Redis is unreachable.
        """
        after = parse_after_id(after_id)
        if not self._running:
            raise HubUnavailable("event hub is not running")
        r = self._runs.get(run_id)
        creator = r is None
        if r is None:
            r = Run(run_id)
            self._runs[run_id] = r
            r.ready = asyncio.ensure_future(self._activate(r, fresh=fresh and after is None))
            r.ready.add_done_callback(_retrieve)
        sub = Subscription(self, r, after, self._buffer)
        r.subs.add(sub)
        self._subscribers += 1
        try:
            assert r.ready is not None
            info = await asyncio.shield(r.ready)
            if not creator:  # its own look, taken after it registered
                info = await self._stream_info(r.key)
                self._rewind_if_behind(r, info)
        except BaseException:
            sub.close()
            raise
        sub._open(info, run, None if r.finished else r.cursor)
        return sub

    def _rewind_if_behind(self, r: Run, info: StreamInfo) -> None:
        """A stream that now ends before the run's live cursor lost its newest
        events (a Redis Cluster failover to a replica that had not received
        them; its runner puts them back with their own ids, relay_runner.eventlog):
        the cursor goes back to where the stream ends, so the live feed reads
        them again when they are back. Subscribers already past them drop them
        (`Subscription._accept`); a new one gets them."""
        self._rewind_to(r, info.last_id or "0-0")

    def _rewind_to(self, r: Run, last: str) -> None:
        """The run's live cursor goes back to `last`, where its stream was found to
        end (by a look, or by a replay bounded by the cursor that ended short of
        it: a look before a failover and the replay after, before the runner put
        the events back), when that is before the cursor."""
        if r.finished or r.cursor is None or r.cursor == "0-0":
            return
        if parse_stream_id(last) < parse_stream_id(r.cursor):
            log.warning(
                "run stream behind the live cursor (events lost?); reading it again",
                extra={"run_id": r.run_id, "cursor": r.cursor, "stream_last": last},
            )
            reader = self._readers.get(self._batch_of(r.run_id))
            if reader is not None:
                reader.rewind(r, last)

    async def _activate(self, r: Run, *, fresh: bool = False) -> StreamInfo:
        """Fix the run's live cursor (after the first subscriber registered)."""
        if fresh:  # a run created a moment ago: everything in its stream is news
            info = StreamInfo(missing=True)
            r.move("0-0")
            self._follow(r)
            return info
        try:
            info = await self._stream_info(r.key)
        except HubUnavailable:
            if self._runs.get(r.run_id) is r:
                del self._runs[r.run_id]
            raise
        if info.last_terminal:
            r.finished = True
        else:
            r.move(info.last_id or "0-0")
            if r.subs and self._runs.get(r.run_id) is r:
                self._follow(r)
        return info

    def _detach(self, sub: Subscription) -> None:
        r = sub._run
        if sub in r.subs:
            r.subs.discard(sub)
            self._subscribers -= 1
        if not r.subs and self._runs.get(r.run_id) is r:
            del self._runs[r.run_id]
            reader = self._readers.get(self._batch_of(r.run_id))
            if reader is not None:
                reader.live.pop(r.key, None)

    def _follow(self, r: Run) -> None:
        if self._running:
            self._reader(self._batch_of(r.run_id)).follow(r)

    # Redis calls

    async def _stream_info(self, key: str) -> StreamInfo:
        assert self._cmd is not None
        try:
            raw: dict[str, Any] = await self._cmd.xinfo_stream(key)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return StreamInfo(missing=True)
            raise HubUnavailable(f"cannot inspect {key}: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise HubUnavailable(f"redis unavailable: {type(exc).__name__}") from exc
        first: Any = raw.get("first-entry") or (None, None)
        last: Any = raw.get("last-entry") or (None, None)
        deleted = raw.get("max-deleted-entry-id")
        return StreamInfo(
            missing=False,
            first=parse_stream_id(first[0]) if first[0] else None,
            last_id=last[0] or None,
            last_terminal=bool(last[0]) and (last[1] or {}).get("event") in TERMINAL_EVENTS,
            max_deleted=parse_stream_id(deleted) if deleted else None,
        )

    async def _xrange(
        self, key: str, start: str, end: str, count: int
    ) -> list[tuple[str, dict[str, str]]]:
        """A replay page; waits out a Redis outage (with backoff) rather than failing."""
        failures = 0
        while True:
            if self._cmd is None:
                return []
            try:
                page: Any = await self._cmd.xrange(key, min=start, max=end, count=count)
                return list(page or [])
            except ResponseError as exc:
                if not isinstance(exc, TRANSIENT_REFUSALS):  # do not retry it forever
                    log.warning("replay of %s refused by Redis: %s", key, exc)
                    return []
                failures += 1
                await asyncio.sleep(backoff_s(failures))
            except (RedisError, OSError) as exc:
                reraise_if_cancelled()
                failures += 1
                if failures == 1:
                    log.warning("replay read failed; retrying: %s", type(exc).__name__)
                await asyncio.sleep(backoff_s(failures))


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark an activation's failure as seen even if no subscriber awaited it."""
    if not fut.cancelled():
        fut.exception()
