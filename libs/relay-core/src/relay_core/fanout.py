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
- `fanout_xread`: each run's per-process state and the reader's multiplexed
  `XREAD`, assembled from RESP pieces;
- `fanout_stream`: stream and resume ids, `RunRecord`, entry decoding;
- `fanout_errors`: the errors a subscriber can see.

Design decisions of the hub, and why:

- **One multiplexed reader, a bounded number of Redis connections.** A single
  task issues `XREAD BLOCK` over every run stream that has at least one
  subscriber here, on one dedicated connection; each run's cursor is kept once
  per process (not per client) and each entry read is decoded once and fanned
  out to every subscriber of that run. Everything else (stream inspection,
  replays, wake-ups) shares a *blocking* pool of `max_connections - 1`
  connections, so the total stays at `max_connections` (16 by default) whether
  there are ten subscribers or ten thousand: a burst of new subscribers queues
  for a pooled connection instead of opening more.
- **No gap, no duplicate.** A subscriber registers for the live feed *before*
  it looks at the stream, and the run's live cursor is fixed by an `XINFO
  STREAM` issued after the first subscriber registered. The live feed brings
  everything after the cursor the subscriber found once registered; its
  replay (`XRANGE (after_id cursor`, skipped when empty) brings the rest. The
  two overlap at most, and the subscription's one filter (strictly newer ids
  only, `fanout_subscription`) makes the seam exact.
- **Waking the reader.** A new run must join the reader's `XREAD` without
  waiting out its block timeout: the reader also blocks on a per-process wake
  stream (`keys.events_wake`), and activating a run XADDs to it (coalesced;
  skipped when the reader already has the run). Unlike short polling blocks
  (10 ms blocks re-send every key 100 times a second even when idle, 5000
  keys is ~0.5 MB/s of commands per idle process) a wake costs one XADD per new
  run, cannot be lost (an XADD that lands before the XREAD is seen by it), and
  works on any Redis >= 5 without admin commands (`CLIENT UNBLOCK` needs
  `@admin` in ACL setups). Measured here (bench/fanout.py, `wake`): a new
  run's first event reaches its subscriber in 2 ms (p50), 8 ms (p99) while
  2,000 other runs are followed.
- **The per-event path stays in one place.** `_dispatch` -> `_fan_out` ->
  `Subscription._push` is the hot path (21,000 events/s in bench/fanout.py):
  it calls the subscription's methods directly, with no layer in between.
- **The process's garbage collector.** With ten thousand subscribers the heap
  holds hundreds of thousands of long-lived objects, and CPython's default
  thresholds stop the loop for 60-190 ms every second or two under load: a
  process hosting a hub calls `relay_core.gctune.tune_gc()` at start-up.
- **Redis restarts.** The reader reconnects with capped exponential backoff
  and resumes every run from its cursor; replays retry the same way. Only
  `subscribe()` fails fast (`HubUnavailable`) so a service can answer 503
  before it starts streaming.

Everything runs on one event loop; the hub is not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Connection, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from relay_core import keys
from relay_core.events import TERMINAL_EVENTS, parse_stream_id
from relay_core.fanout_errors import FanoutError, HubUnavailable, SubscriberTooSlow
from relay_core.fanout_stream import (
    RunRecord,
    StreamInfo,
    decode_or_skip,
    parse_after_id,
    transcript_url,
)
from relay_core.fanout_subscription import Subscription
from relay_core.fanout_xread import Run, bulk, xread_command

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

_WAKE_TTL_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class HubStats:
    subscribers: int  # subscriptions open now
    runs: int  # runs with at least one subscriber
    live_runs: int  # runs the reader follows now
    delivered: int  # events handed to subscribers since start (replay included)
    dropped: int  # subscribers dropped as too slow since start
    redis_connections: int  # connections the hub holds (reader + pool)
    reader_connected: bool


def _backoff_s(failures: int) -> float:
    base = min(1.0, 0.05 * 2 ** min(failures, 10))
    return base * (0.5 + random.random())  # noqa: S311 - jitter, not a secret


class EventHub:
    """One per process: `await start()`, `await subscribe(...)`, `await stop()`.

    `max_connections` bounds every Redis connection the hub opens (one reader
    plus a blocking pool of the rest). `subscriber_buffer` is how many live
    events a subscriber may fall behind before it is dropped.
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
    ) -> None:
        if max_connections < 2:
            raise ValueError("max_connections must be at least 2 (a reader and a command)")
        self.hub_id = uuid.uuid4().hex[:12]
        self.client_name = f"{client_name}-{self.hub_id}"
        self.replay_page = replay_page
        self._url = redis_url
        self._max_connections = max_connections
        self._buffer = subscriber_buffer
        self._block_ms = int(block_s * 1000)
        self._read_count = read_count
        self._timeout_s = timeout_s
        self._wake_key = keys.events_wake(self.hub_id)
        self._wake_key_resp = bulk(self._wake_key)
        self._wake_cursor = "0-0"
        self._runs: dict[str, Run] = {}
        self._live: dict[str, Run] = {}  # stream key -> run the reader follows
        self._gen = 0  # bumped when a run joins the live set
        self._inflight_gen: int | None = None  # the set the pending XREAD was built from
        self._wake_task: asyncio.Task[None] | None = None
        self._wake_again = False
        self._subscribers = 0
        self._delivered = 0
        self._dropped = 0
        self._reader_ok = False
        self._cmd: Redis | None = None
        self._reader: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False

    # lifecycle

    async def start(self) -> None:
        """Create the clients and start the reader; never fails when Redis is down."""
        common: dict[str, Any] = {
            "decode_responses": True,
            "protocol": 2,  # the reply shapes `_dispatch` reads, whatever redis-py's default
            "socket_connect_timeout": self._timeout_s,
            "client_name": self.client_name,
        }
        pool = BlockingConnectionPool.from_url(
            self._url,
            max_connections=self._max_connections - 1,
            # a burst of new subscribers queues for a connection; only a pool
            # that stays exhausted this long (Redis alive but stuck) is an error
            timeout=max(15.0, self._timeout_s),
            socket_timeout=self._timeout_s,
            # the asyncio Retry (the sync one never retries an async call);
            # connection errors only, as relay_core.redis explains
            retry=Retry(
                ExponentialBackoff(cap=0.5, base=0.05),
                retries=1,
                supported_errors=(RedisConnectionError,),
            ),
            **common,
        )
        self._cmd = Redis(connection_pool=pool)
        # The reader speaks RESP directly on its own connection (see `_read_loop`).
        self._reader = ConnectionPool.from_url(
            self._url,
            socket_timeout=self._block_ms / 1000 + self._timeout_s,
            retry=Retry(NoBackoff(), retries=0),
            **common,
        ).make_connection()
        self._running = True
        self._task = asyncio.create_task(self._read_loop(), name=f"fanout-reader-{self.hub_id}")

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
        """Drain, stop the reader, close the connections."""
        self.drain()
        if self._reader is not None:
            # Closing the reader's socket ends a blocked XREAD at once. Cancelling
            # alone is not enough: a cancellation that lands while redis-py is
            # between reads can be lost, leaving the read to run out its block.
            with contextlib.suppress(RedisError, OSError):
                await self._reader.disconnect()
        for task in (self._task, self._wake_task):
            if task is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), timeout=1.0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._cmd is not None:
            with contextlib.suppress(TimeoutError, RedisError, OSError):
                async with asyncio.timeout(self._timeout_s):
                    await self._cmd.delete(self._wake_key)
        if self._cmd is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._cmd.aclose(close_connection_pool=True)
        self._cmd = self._reader = None

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
        conns = 1 if self._reader is not None and self._reader.is_connected else 0
        if self._cmd is not None:
            conns += sum(n for n, _ in self._cmd.connection_pool.get_connection_count())
        return HubStats(
            subscribers=self._subscribers,
            runs=len(self._runs),
            live_runs=len(self._live),
            delivered=self._delivered,
            dropped=self._dropped,
            redis_connections=conns,
            reader_connected=self._reader_ok,
        )

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
        except BaseException:
            sub.close()
            raise
        sub._open(info, run, None if r.finished else r.cursor)
        return sub

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
            self._live.pop(r.key, None)

    def _follow(self, r: Run) -> None:
        self._live[r.key] = r
        self._gen += 1
        if self._wake_task is None or self._wake_task.done():
            self._wake_task = asyncio.create_task(self._send_wakes())
        else:
            self._wake_again = True

    async def _send_wakes(self) -> None:
        """XADD to the wake stream until the reader's XREAD covers every live run."""
        while True:
            self._wake_again = False
            if self._cmd is not None and self._inflight_gen is not None:
                if self._inflight_gen < self._gen:
                    try:
                        async with self._cmd.pipeline(transaction=False) as pipe:
                            pipe.xadd(self._wake_key, {"w": "1"}, maxlen=16, approximate=True)
                            pipe.pexpire(self._wake_key, _WAKE_TTL_MS)
                            await pipe.execute()
                    except (RedisError, OSError):
                        log.debug("wake-up failed; the reader will catch up", exc_info=True)
            if not self._wake_again:
                return

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
            except ResponseError as exc:  # not transient: do not retry it forever
                log.warning("replay of %s refused by Redis: %s", key, exc)
                return []
            except (RedisError, OSError) as exc:
                _reraise_if_cancelled()
                failures += 1
                if failures == 1:
                    log.warning("replay read failed; retrying: %s", type(exc).__name__)
                await asyncio.sleep(_backoff_s(failures))

    # the reader

    async def _read_loop(self) -> None:
        failures = 0
        while self._running and self._reader is not None:
            snapshot = dict(self._live)
            command = xread_command(
                snapshot.values(),
                wake_key_resp=self._wake_key_resp,
                wake_cursor=self._wake_cursor,
                count=self._read_count,
                block_ms=self._block_ms,
            )
            self._inflight_gen = self._gen
            try:
                await self._reader.send_packed_command(command, check_health=False)
                if not self._running:  # stop() came while it was connecting
                    await self._reader.disconnect()
                    return
                self._reader_ok = True  # connected and asked: a quiet block is healthy
                reply: Any = await self._reader.read_response()
            except (RedisError, OSError) as exc:
                _reraise_if_cancelled()
                self._inflight_gen = None
                self._reader_ok = False
                if not self._running:
                    return  # stop() closed the connection under it
                with contextlib.suppress(RedisError, OSError):
                    await self._reader.disconnect()
                failures += 1
                if failures == 1:
                    log.warning("event reader lost Redis; reconnecting: %s", type(exc).__name__)
                await asyncio.sleep(_backoff_s(failures))
                continue
            self._inflight_gen = None
            self._reader_ok = True
            if failures:
                log.info("event reader reconnected after %d failed reads", failures)
                failures = 0
            if reply:
                self._dispatch(reply, snapshot)

    def _dispatch(self, reply: list[Any], snapshot: dict[str, Run]) -> None:
        # raw RESP2 reply: [[key, [[id, [field, value, ...]], ...]], ...]
        for key, entries in reply:
            if key == self._wake_key:
                if entries:
                    self._wake_cursor = entries[-1][0]
                continue
            r = self._live.get(key)
            if r is not None and r is snapshot.get(key):
                self._fan_out(r, entries)

    def _fan_out(self, r: Run, entries: list[list[Any]]) -> None:
        for entry_id, flat in entries:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            event = decode_or_skip(entry_id, fields)
            if event is None:
                continue
            item = (parse_stream_id(entry_id), event)
            for sub in tuple(r.subs):
                sub._push(item)
            if event.terminal:
                r.finished = True
                self._live.pop(r.key, None)
                break
        if entries:
            r.move(entries[-1][0])


def _reraise_if_cancelled() -> None:
    """redis-py can turn a cancellation that lands mid-read into a connection or
    timeout error; a retry loop must not swallow it (it would keep the task
    alive after `stop()` cancelled it)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark an activation's failure as seen even if no subscriber awaited it."""
    if not fut.cancelled():
        fut.exception()
