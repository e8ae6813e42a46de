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

Design decisions, and why:

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
  two overlap at most, and delivering only ids strictly newer than the last
  one delivered makes the seam exact: stream ids are the order.
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
- **The reader's command is assembled, not packed.** `XREAD` over thousands
  of streams is built from RESP pieces encoded once per run and per cursor
  move, and sent on a raw connection: redis-py's generic packer took ~4 ms
  per call with 4,000 arguments, most of the engine's CPU.
- **Slow subscribers are dropped, never waited for.** The reader only appends
  to a subscriber's bounded buffer (`subscriber_buffer` events); one that is
  full is dropped at once (`SubscriberTooSlow` from its next read; the client
  resumes from its last id), so a stalled client costs the others nothing.
- **Never a silent gap.** A stream that is gone while the run is terminal
  (events expired) yields `resync` then a `done` synthesised from the run
  record; a resume id older than what the stream still keeps yields `resync`
  first, then what is kept. On Redis 7 the check uses XINFO's
  `max-deleted-entry-id` (exact); on 6.2 an id older than the first kept entry
  counts as a gap (it may rarely be a false alarm, never a missed one).
- **The process's garbage collector.** With ten thousand subscribers the heap
  holds hundreds of thousands of long-lived objects, and CPython's default
  thresholds stop the loop for 60-190 ms every second or two under load: a
  process hosting a hub calls `relay_core.gctune.tune_gc()` at start-up
  (re-exported here).
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
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import BlockingConnectionPool, Connection, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from relay_core import events as ev
from relay_core import keys
from relay_core.events import TERMINAL_EVENTS, TERMINAL_STATUSES, Event, parse_stream_id
from relay_core.gctune import GC_THRESHOLDS, tune_gc

__all__ = [
    "GC_THRESHOLDS",
    "EventHub",
    "FanoutError",
    "HubStats",
    "HubUnavailable",
    "RunRecord",
    "SubscriberTooSlow",
    "Subscription",
    "parse_after_id",
    "transcript_url",
    "tune_gc",
]

log = logging.getLogger(__name__)

StreamId = tuple[int, int]
_NO_ID: StreamId = (-1, -1)
_ZERO_ID: StreamId = (0, 0)
_Item = tuple[StreamId, Event]
_WAKE_TTL_MS = 3_600_000
_MAX_PART = 2**64 - 1  # Redis ids are two unsigned 64-bit numbers; keep `(id` valid


class FanoutError(Exception):
    """Base of the errors a subscriber can see."""


class SubscriberTooSlow(FanoutError):
    """The subscriber's buffer overflowed; it was dropped and must resume from its last id."""


class HubUnavailable(FanoutError):
    """Redis cannot be reached (or the hub is not running): answer 503, retry later."""


class RunRecord(Protocol):
    """What the hub needs to know about a run (`state_api.RunOut` has it)."""

    @property
    def status(self) -> str: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def cost_usd(self) -> float: ...


@dataclass(frozen=True, slots=True)
class HubStats:
    subscribers: int  # subscriptions open now
    runs: int  # runs with at least one subscriber
    live_runs: int  # runs the reader follows now
    delivered: int  # events handed to subscribers since start (replay included)
    dropped: int  # subscribers dropped as too slow since start
    redis_connections: int  # connections the hub holds (reader + pool)
    reader_connected: bool


def transcript_url(conversation_id: str) -> str:
    return f"/v1/conversations/{conversation_id}/messages"


def parse_after_id(value: str | None) -> StreamId | None:
    """A resume id (`Last-Event-ID`) as a tuple; None for none or `0`/`0-0`.

    Raises ValueError when it is malformed (the service answers 400).
    """
    if value is None or value.strip() == "":
        return None
    sid = parse_stream_id(value.strip())
    if sid[0] >= _MAX_PART or sid[1] >= _MAX_PART:
        raise ValueError(f"event id out of range {value!r}")
    return None if sid == _ZERO_ID else sid


def _id_text(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


def _decode(entry_id: str, fields: dict[str, str]) -> Event | None:
    try:
        return ev.decode_entry(entry_id, fields)
    except (KeyError, ValueError):
        log.warning("skipping a malformed event entry", extra={"entry_id": entry_id})
        return None


def _bulk(value: str) -> bytes:
    """A RESP bulk string."""
    raw = value.encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def _backoff_s(failures: int) -> float:
    base = min(1.0, 0.05 * 2 ** min(failures, 10))
    return base * (0.5 + random.random())  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True, slots=True)
class _StreamInfo:
    missing: bool
    first: StreamId | None = None
    last_id: str | None = None
    last_terminal: bool = False
    max_deleted: StreamId | None = None  # Redis 7+ only


class _Run:
    """Per-process state of one run: its subscribers and the reader's cursor."""

    __slots__ = ("cursor", "cursor_resp", "finished", "key", "key_resp", "ready", "run_id", "subs")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.key = keys.events(run_id)
        self.key_resp = _bulk(self.key)  # its piece of the reader's XREAD, encoded once
        self.subs: set[Subscription] = set()
        self.cursor: str | None = None  # set once activated; the reader reads after it
        self.cursor_resp = b""
        self.finished = False  # the terminal event is stored: nothing more will come
        self.ready: asyncio.Future[_StreamInfo] | None = None

    def move(self, cursor: str) -> None:
        self.cursor = cursor
        self.cursor_resp = _bulk(cursor)


class Subscription:
    """One subscriber's view of a run: replay from its resume id, then the live feed.

    Iterate it (`async for event in sub`) or take what is ready in one go
    (`await sub.next_batch()`); either ends after the terminal event, raises
    `SubscriberTooSlow` if it was dropped, and ends quietly when the hub
    stops. `close()` (or leaving `async with`) detaches it at once.
    """

    __slots__ = (
        "_buf", "_closed", "_dropped", "_ended", "_hub", "_last", "_max", "_ready",
        "_replay_from", "_replay_to", "_replaying", "_run", "_waiter", "run_id",
    )  # fmt: skip

    def __init__(self, hub: EventHub, run: _Run, after: StreamId | None, buffer: int) -> None:
        self.run_id = run.run_id
        self._hub = hub
        self._run = run
        self._last: StreamId = after or _NO_ID
        self._replay_from = "-" if after is None else "(" + _id_text(after)
        self._replay_to = "+"  # bounded by `_open` to what the live feed does not cover
        self._replaying = True
        self._ready: deque[Event] = deque()  # due to the consumer, in order
        self._buf: deque[_Item] = deque()  # the live feed, filled by the reader
        self._max = buffer
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._dropped = False
        self._closed = False

    @property
    def last_id(self) -> str | None:
        """Id of the last stored event delivered (or the resume id)."""
        return None if self._last == _NO_ID else _id_text(self._last)

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
                self._ended = True  # nothing more will be stored
            else:
                await self._wait()

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
        """The one gate to the consumer: strictly newer ids only, nothing after `done`."""
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
            event = _decode(entry_id, fields)
            if event is not None:
                self._accept(parse_stream_id(entry_id), event)
            if self._ended:
                break
        if len(entries) < page or self._ended:
            self._replaying = False

    def _open(self, info: _StreamInfo, run: RunRecord, live_from: str | None) -> None:
        """Bound the replay, and decide what comes before it: nothing, or `resync`.

        `live_from` is the run's live cursor once this subscriber was registered:
        the live feed brings everything after it, so the replay stops there
        (None: the run is finished and is replayed to its end).
        """
        if live_from is not None:
            self._replay_to = live_from
            upto = parse_stream_id(live_from)
            if upto == _ZERO_ID or upto <= self._last:
                self._replaying = False  # nothing stored that the live feed will not bring
        url = transcript_url(run.conversation_id)
        if info.missing:
            if run.status in TERMINAL_STATUSES:
                self._ready.append(ev.resync("events_expired", url))
                self._ready.append(ev.done(run.status, run.cost_usd))
                self._ended = True
            return
        after = self._last if self._last != _NO_ID else None
        if info.max_deleted is not None:
            gap = info.max_deleted > (after or _ZERO_ID)
        else:
            gap = after is not None and info.first is not None and after < info.first
        if gap:
            self._ready.append(ev.resync("events_trimmed", url))

    # reader side

    def _push(self, item: _Item) -> None:
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
        self._wake_key_resp = _bulk(self._wake_key)
        self._wake_cursor = "0-0"
        self._runs: dict[str, _Run] = {}
        self._live: dict[str, _Run] = {}  # stream key -> run the reader follows
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
        self, run_id: str, *, after_id: str | None = None, run: RunRecord
    ) -> Subscription:
        """Open a subscription to `run_id`'s events after `after_id` (exclusive).

        `run` is the run's record (the caller has fetched it for the owner
        check): it decides what an expired stream means. Raises ValueError for
        a malformed `after_id` and `HubUnavailable` when Redis is unreachable.
        """
        after = parse_after_id(after_id)
        if not self._running:
            raise HubUnavailable("event hub is not running")
        r = self._runs.get(run_id)
        creator = r is None
        if r is None:
            r = _Run(run_id)
            self._runs[run_id] = r
            r.ready = asyncio.ensure_future(self._activate(r))
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

    async def _activate(self, r: _Run) -> _StreamInfo:
        """Fix the run's live cursor (after the first subscriber registered)."""
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

    def _follow(self, r: _Run) -> None:
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

    async def _stream_info(self, key: str) -> _StreamInfo:
        assert self._cmd is not None
        try:
            raw: dict[str, Any] = await self._cmd.xinfo_stream(key)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return _StreamInfo(missing=True)
            raise HubUnavailable(f"cannot inspect {key}: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise HubUnavailable(f"redis unavailable: {type(exc).__name__}") from exc
        first: Any = raw.get("first-entry") or (None, None)
        last: Any = raw.get("last-entry") or (None, None)
        deleted = raw.get("max-deleted-entry-id")
        return _StreamInfo(
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
            command = self._xread_command(snapshot)
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

    def _xread_command(self, snapshot: dict[str, _Run]) -> bytes:
        """`XREAD COUNT n BLOCK ms STREAMS <wake> <keys...> <wake id> <ids...>` in RESP.

        Built from pieces encoded once per run (and once per cursor move):
        redis-py's generic packer spends ~4 ms on a command with 4,000
        arguments, every loop, which was most of the engine's CPU.
        """
        n = len(snapshot) + 1
        head = b"*%d\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n%s$5\r\nBLOCK\r\n%s$7\r\nSTREAMS\r\n" % (
            6 + 2 * n,
            _bulk(str(self._read_count)),
            _bulk(str(self._block_ms)),
        )
        runs = snapshot.values()
        return b"".join(
            [
                head,
                self._wake_key_resp,
                *[r.key_resp for r in runs],
                _bulk(self._wake_cursor),
                *[r.cursor_resp for r in runs],
            ]
        )

    def _dispatch(self, reply: list[Any], snapshot: dict[str, _Run]) -> None:
        # raw RESP2 reply: [[key, [[id, [field, value, ...]], ...]], ...]
        for key, entries in reply:
            if key == self._wake_key:
                if entries:
                    self._wake_cursor = entries[-1][0]
                continue
            r = self._live.get(key)
            if r is not None and r is snapshot.get(key):
                self._fan_out(r, entries)

    def _fan_out(self, r: _Run, entries: list[list[Any]]) -> None:
        for entry_id, flat in entries:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            event = _decode(entry_id, fields)
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
