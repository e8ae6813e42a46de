"""The fan-out's readers: one multiplexed `XREAD BLOCK` per partition batch.

Internal to `relay_core.fanout`. A `BatchReader` follows every run of its
batch that has a subscriber in this process, on a connection of its own, and
hands each entry to the run's subscribers (`_dispatch` -> `_fan_out` ->
`Subscription._push`: the per-event hot path, with no layer in between).

Design decisions, and why:

- **A batch is every partition on a plain Redis, one partition on a
  cluster.** A blocking read cannot span slots in a cluster, and a
  connection serves one blocking read at a time, so a cluster needs one
  reader per partition that has followed runs (at most
  `RELAY_REDIS_PARTITIONS`, each on the node that owns its slot); a plain
  server keeps the one reader over every run it always had. Same code:
  only the batch of a run differs (`EventHub._batch_of`).
- **Each reader has its own wake stream**, in its batch's slot
  (`keys.events_wake(hub, partition)`), so waking it is one XADD there.
- **A cluster reader finds its node through redis-py's slot map**
  (`RedisCluster.get_node_from_key` on its wake key) and opens a plain
  connection to it with the cluster client's own settings (TLS, password).
  Any failure (the node died, MOVED after a failover) drops the connection,
  refreshes the slot map (`nodes_manager.initialize()`), and reconnects
  with capped exponential backoff; every run resumes from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING, Any

from redis.asyncio import ConnectionPool, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from relay_core import keys
from relay_core.events import parse_stream_id
from relay_core.fanout_stream import decode_or_skip
from relay_core.fanout_xread import Run, bulk, xread_command

if TYPE_CHECKING:
    from relay_core.fanout import EventHub

__all__ = ["BatchReader", "backoff_s", "reraise_if_cancelled"]

log = logging.getLogger(__name__)

_WAKE_TTL_MS = 3_600_000


def backoff_s(failures: int) -> float:
    base = min(1.0, 0.05 * 2 ** min(failures, 10))
    return base * (0.5 + random.random())  # noqa: S311 - jitter, not a secret


def reraise_if_cancelled() -> None:
    """redis-py can turn a cancellation that lands mid-read into a connection or
    timeout error; a retry loop must not swallow it (it would keep the task
    alive after `stop()` cancelled it)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class BatchReader:
    """The reader of one partition batch: its live runs, its wake stream, its connection."""

    def __init__(self, hub: EventHub, batch: int) -> None:
        self.hub = hub
        self.batch = batch
        self.wake_key = keys.events_wake(hub.hub_id, batch)
        self._wake_key_resp = bulk(self.wake_key)
        self._wake_cursor = "0-0"
        self.live: dict[str, Run] = {}  # stream key -> run the reader follows
        self.gen = 0  # bumped when a run joins the live set
        self.inflight_gen: int | None = None  # the set the pending XREAD was built from
        self.ok = False
        self._conn: Connection | None = None
        self._wake_task: asyncio.Task[None] | None = None
        self._wake_again = False
        self.task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.is_connected

    def start(self) -> None:
        self.task = asyncio.create_task(
            self._read_loop(), name=f"fanout-reader-{self.hub.hub_id}-{self.batch}"
        )

    async def stop(self) -> None:
        # Closing the socket ends a blocked XREAD at once. Cancelling alone is
        # not enough: a cancellation that lands while redis-py is between
        # reads can be lost, leaving the read to run out its block.
        if self._conn is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._conn.disconnect()
        for task in (self.task, self._wake_task):
            if task is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), timeout=1.0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # following runs

    def follow(self, r: Run) -> None:
        self.live[r.key] = r
        self.gen += 1
        if self._wake_task is None or self._wake_task.done():
            self._wake_task = asyncio.create_task(self._send_wakes())
        else:
            self._wake_again = True

    def rewind(self, r: Run, cursor: str) -> None:
        """Read the run again from `cursor` (back from where it was): a reply read
        with the old cursor is stale (`epoch`), and the XREAD in flight is woken."""
        r.move(cursor)
        r.epoch += 1
        if self.live.get(r.key) is r:
            self.follow(r)

    async def _send_wakes(self) -> None:
        """XADD to the wake stream until the reader's XREAD covers every live run."""
        while True:
            self._wake_again = False
            cmd = self.hub._cmd
            if cmd is not None and self.inflight_gen is not None and self.inflight_gen < self.gen:
                try:
                    async with cmd.pipeline(transaction=False) as pipe:
                        pipe.xadd(self.wake_key, {"w": "1"}, maxlen=16, approximate=True)
                        pipe.pexpire(self.wake_key, _WAKE_TTL_MS)
                        await pipe.execute()
                except (RedisError, RedisClusterException, OSError, RuntimeError):
                    # RuntimeError: redis-py's cluster pipeline may write to a
                    # connection another task closed after a node failed (uvloop)
                    log.debug("wake-up failed; the reader will catch up", exc_info=True)
            if not self._wake_again:
                return

    # the connection

    async def _connection(self) -> Connection:
        if self._conn is not None:
            return self._conn
        hub = self.hub
        kwargs: dict[str, Any] = {
            "socket_timeout": hub._block_ms / 1000 + hub._timeout_s,
            "retry": Retry(NoBackoff(), retries=0),
        }
        cluster = hub._cmd if isinstance(hub._cmd, RedisCluster) else None
        if cluster is None:
            pool = ConnectionPool.from_url(hub._url, **hub._common, **kwargs)
            self._conn = pool.make_connection()
        else:
            try:
                await cluster.initialize()
                node = cluster.get_node_from_key(self.wake_key)
            except RedisClusterException as exc:  # no node reachable, slot not covered
                raise RedisConnectionError(f"redis cluster unavailable: {exc}") from exc
            self._conn = node.connection_class(**{**node.connection_kwargs, **kwargs})
        return self._conn

    async def _lost(self) -> None:
        """After a failed read: close the connection; on a cluster, refresh the slot map."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(RedisError, OSError):
                await conn.disconnect()
        cmd = self.hub._cmd
        if isinstance(cmd, RedisCluster):
            with contextlib.suppress(RedisError, RedisClusterException, OSError):
                await cmd.nodes_manager.initialize()

    # the loop

    async def _read_loop(self) -> None:
        hub = self.hub
        failures = 0
        while hub._running:
            snapshot = {key: (r, r.epoch) for key, r in self.live.items()}
            command = xread_command(
                [r for r, _ in snapshot.values()],
                wake_key_resp=self._wake_key_resp,
                wake_cursor=self._wake_cursor,
                count=hub._read_count,
                block_ms=hub._block_ms,
            )
            self.inflight_gen = self.gen
            try:
                conn = await self._connection()
                await conn.send_packed_command(command, check_health=False)
                if not hub._running:  # stop() came while it was connecting
                    await conn.disconnect()
                    return
                self.ok = True  # connected and asked: a quiet block is healthy
                reply: Any = await conn.read_response()
            except (RedisError, OSError) as exc:
                reraise_if_cancelled()
                self.inflight_gen = None
                self.ok = False
                if not hub._running:
                    return  # stop() closed the connection under it
                await self._lost()
                failures += 1
                if failures == 1:
                    log.warning("event reader lost Redis; reconnecting: %s", type(exc).__name__)
                await asyncio.sleep(backoff_s(failures))
                continue
            self.inflight_gen = None
            self.ok = True
            if failures:
                log.info("event reader reconnected after %d failed reads", failures)
                failures = 0
            if reply:
                self._dispatch(reply, snapshot)

    def _dispatch(self, reply: list[Any], snapshot: dict[str, tuple[Run, int]]) -> None:
        # raw RESP2 reply: [[key, [[id, [field, value, ...]], ...]], ...]
        for key, entries in reply:
            if key == self.wake_key:
                if entries:
                    self._wake_cursor = entries[-1][0]
                continue
            r = self.live.get(key)
            if r is not None and (r, r.epoch) == snapshot.get(key):
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
                self.live.pop(r.key, None)
                break
        if entries:
            r.move(entries[-1][0])
