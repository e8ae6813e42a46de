"""The one way services open Redis: redis-py's asyncio client with timeouts, a
plain server or a Redis Cluster, from the one `RELAY_REDIS_URL`.

Timeouts are short so a dead Redis turns into a fast 503 (or a runner backing
off), never a hung request. A client that issues blocking reads (XREAD BLOCK,
XREADGROUP BLOCK) is a separate client whose `timeout_s` exceeds its block
time, so the blocking call is not cut short by the socket timeout.

Standalone: the pool is a `BlockingConnectionPool`: under a burst (200 chats
at once), a request waits up to `timeout_s` for a free connection instead of
failing at once with "Too many connections" (which the services would report
as Redis being down).

The retry is redis-py's ASYNCIO `Retry` (`redis.asyncio.retry`): the sync one
returns the coroutine unawaited, so nothing was retried and every pooled
connection failed once after a Redis restart (tests/test_redis_reconnect.py).
With it a command whose connection died is retried once after reconnecting,
and a pubsub connection reconnects and re-subscribes by itself: a subscriber
that must know it may have missed messages watches for subscribe
confirmations (see `relay_core.auth.RevocationListener`), not for errors.

Only connection errors are retried, not timeouts: retrying a timed-out
command would double the time a hung Redis takes to turn into a 503 (and
resend a command the hung server may still execute).

`stream_entries` types a stream reply as these clients return it: redis-py
annotates each reply for every kind of client (bytes or str, None where a
field may be missing), which a `decode_responses` client never returns.

Redis Cluster (docs/design.md, "Redis keys"; docs/deploy.md):

- **Which one is decided once per process and URL** (`redis_mode`):
  `RELAY_REDIS_MODE=cluster` or `standalone` forces it; `auto` (the default)
  asks the server (`INFO cluster` -> `cluster_enabled:1`) when the first
  client is created. A server that cannot be reached then is taken as
  standalone, and every connection that client opens asks again: if it finds
  a cluster it fails (a `ConnectionError` naming `RELAY_REDIS_MODE`, so the
  service answers 503 and logs why) rather than send commands a cluster
  would redirect. A restart (or the setting) fixes it; the chart sets the
  mode explicitly.
- **redis-py's own cluster client** (`redis.asyncio.RedisCluster`) routes by
  slot, follows MOVED/ASK and refreshes the topology after a failover; Relay
  writes no slot routing of its own. It is typed here as `Redis`: it offers
  every command Relay uses with the same signatures (the cluster test suite,
  `make test-redis-cluster`, runs the Redis-facing tests on it).
- **Its errors are Relay's**: "no node reachable" and "slot not covered"
  (`RedisClusterException`, not a `RedisError` in redis-py) are raised as a
  `ConnectionError`, which every caller already reads as Redis being down.
- **Its pool does not block**: a node whose `max_connections` are all in use
  raises `MaxConnectionsError` at once (redis-py has no blocking pool for
  cluster nodes). `_GatedCluster` restores the standalone behaviour with a
  semaphore of `max_connections` commands and pipelines in flight, waited
  for up to `timeout_s`: one command or pipeline holds at most one
  connection per node, so no node's pool can run dry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Literal, cast

import redis as sync_redis
import redis.cluster as sync_cluster
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterPipeline
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

__all__ = [
    "REDIS_MODES",
    "RedisMode",
    "WrongRedisMode",
    "cluster_enabled",
    "create_redis",
    "create_sync_redis",
    "ensure_topology",
    "is_cluster",
    "mget",
    "open_connections",
    "ping",
    "resolve_mode",
    "stream_entries",
]

log = logging.getLogger(__name__)

RedisMode = Literal["auto", "standalone", "cluster"]
REDIS_MODES: tuple[str, ...] = ("auto", "standalone", "cluster")

_detected: dict[str, bool] = {}
_detected_lock = threading.Lock()


class WrongRedisMode(RedisConnectionError):
    """The server is a cluster node, but this client was created for a plain server."""


def cluster_enabled(info: dict[str, Any]) -> bool:
    return str(info.get("cluster_enabled", "0")) == "1"


def _probe(url: str, timeout_s: float) -> bool | None:
    """Whether the server at `url` is a cluster node; None when it cannot be reached."""
    client = sync_redis.Redis.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, decode_responses=True
    )
    try:
        return cluster_enabled(client.info("cluster"))
    except (RedisError, OSError):
        return None
    finally:
        client.close()


def resolve_mode(url: str, mode: str, *, timeout_s: float = 2.0) -> bool | None:
    """True for a cluster, False for a plain server, None when `auto` could not
    tell (the server is unreachable: treated as plain, re-checked per connection)."""
    if mode not in REDIS_MODES:
        raise ValueError(f"RELAY_REDIS_MODE must be one of {', '.join(REDIS_MODES)}, not {mode!r}")
    if mode != "auto":
        return mode == "cluster"
    with _detected_lock:
        if url in _detected:
            return _detected[url]
    found = _probe(url, timeout_s)
    if found is not None:
        with _detected_lock:
            _detected[url] = found
        log.info("redis mode detected: %s", "cluster" if found else "standalone")
    else:
        log.warning("redis unreachable at start-up: taken as standalone until it answers")
    return found


async def _refuse_cluster(connection: Connection) -> None:
    """On-connect check of a client whose `auto` mode could not ask the server."""
    await connection.on_connect()
    await connection.send_command("INFO", "cluster")
    reply = await connection.read_response()
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    if "cluster_enabled:1" in text:
        log.error(
            "RELAY_REDIS_MODE=auto took Redis for a plain server (it was unreachable at "
            "start-up), but it is a cluster: restart the service, or set RELAY_REDIS_MODE=cluster"
        )
        raise WrongRedisMode("Redis is a cluster; restart, or set RELAY_REDIS_MODE=cluster")


def _retry() -> Retry:
    return Retry(
        ExponentialBackoff(cap=0.5, base=0.05), retries=1, supported_errors=(RedisConnectionError,)
    )


def create_redis(
    url: str,
    *,
    timeout_s: float = 2.0,
    max_connections: int = 64,
    mode: str = "auto",
    client_name: str | None = None,
    pool_wait_s: float | None = None,
    protocol: int | None = None,
) -> Redis:
    """An asyncio client for `url`: redis-py's cluster client on a cluster.

    `max_connections` per server (per node on a cluster); a command waits up to
    `pool_wait_s` (default `timeout_s`) for a free one."""
    found = resolve_mode(url, mode, timeout_s=timeout_s)
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": timeout_s,
        "socket_timeout": timeout_s,
        "health_check_interval": 15,
        "max_connections": max_connections,
        "client_name": client_name,
    }
    if protocol is not None:
        common["protocol"] = protocol
    wait_s = timeout_s if pool_wait_s is None else pool_wait_s
    if found:
        cluster: _GatedCluster = _GatedCluster.from_url(  # type: ignore[assignment]
            url,
            # Cluster-level retries (each after a topology refresh): a failover's
            # commands fail fast while no replica is promoted yet, and the
            # callers' own backoff (503, a runner's retry) rides it out.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
            **common,
        )
        cluster.gate(max_connections, wait_s)
        return cast(Redis, cluster)
    if found is None:
        common["redis_connect_func"] = _refuse_cluster
    pool = BlockingConnectionPool.from_url(url, timeout=wait_s, retry=_retry(), **common)
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


class _GatedCluster(RedisCluster):
    """redis-py's cluster client, waiting for a free connection as a blocking pool
    does, and (re)initialised by one command at a time."""

    _slots: asyncio.Semaphore
    _wait_s: float
    _first: asyncio.Lock

    def gate(self, size: int, wait_s: float) -> None:
        self._slots = asyncio.Semaphore(size)
        self._wait_s = wait_s
        self._first = asyncio.Lock()

    async def acquire(self) -> None:
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self._wait_s)
        except TimeoutError:
            raise RedisConnectionError("no free Redis connection within the timeout") from None
        if self._initialize:  # a first use, or a refresh after a failover
            # The first command after a (re)initialisation goes alone. redis-py
            # 8.1 handed commands that started together a connection another
            # one was still opening (AttributeError on its writer); 8.2 (the
            # version required) fixed it, and this keeps a storm of commands
            # from each refreshing the slot map at once.
            try:
                async with self._first:
                    await self.initialize()
            except RedisClusterException as exc:
                self._slots.release()
                raise _unavailable(exc) from exc
            except BaseException:
                self._slots.release()
                raise

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.acquire()
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise _unavailable(exc) from exc
        finally:
            self._slots.release()

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            raise ValueError("shard_hint is not supported by the cluster client")
        return _GatedPipeline(self, transaction)  # type: ignore[abstract]


class _GatedPipeline(ClusterPipeline):
    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        gated = cast(_GatedCluster, self.cluster_client)
        await gated.acquire()
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except RedisClusterException as exc:
            raise _unavailable(exc) from exc
        finally:
            gated._slots.release()


def _unavailable(exc: RedisClusterException) -> RedisConnectionError:
    """redis-py's "no node reachable" / "slot not covered" are not `RedisError`s;
    every caller treats a `ConnectionError` as Redis being down (503, retry)."""
    return RedisConnectionError(f"redis cluster unavailable: {exc}")


def open_connections(client: Redis) -> int:
    """How many connections `client` holds open now (the fan-out's stats)."""
    if isinstance(client, RedisCluster):
        # redis-py keeps no count per cluster node but its list of connections
        return sum(
            sum(1 for c in node._connections if c.is_connected) for node in client.get_nodes()
        )
    return sum(n for n, _ in client.connection_pool.get_connection_count())


async def ensure_topology(client: Redis) -> None:
    """On a cluster, the slot map (what a pub/sub subscription needs before its
    first command: redis-py's cluster pub/sub does not fetch it by itself)."""
    if isinstance(client, _GatedCluster):
        await client.acquire()
        client._slots.release()


def is_cluster(client: object) -> bool:
    """Whether `client` (from `create_redis`) talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


async def mget(client: Redis, names: list[str]) -> list[Any]:
    """MGET of keys that may lie in several slots: one MGET per slot on a cluster
    (redis-py's `mget_nonatomic`, one pipeline), a plain MGET otherwise."""
    if is_cluster(client):
        return list(await cast(RedisCluster, client).mget_nonatomic(names))
    return list(await client.mget(names))


def create_sync_redis(
    url: str, *, timeout_s: float = 2.0, mode: str = "auto"
) -> sync_redis.Redis | sync_cluster.RedisCluster:
    """A synchronous client (the runner's lease heartbeat thread) for `url`."""
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
    }
    if resolve_mode(url, mode, timeout_s=timeout_s):
        return sync_cluster.RedisCluster.from_url(url, **kwargs)
    return sync_redis.Redis.from_url(url, **kwargs)


async def ping(redis: Redis) -> bool:
    try:
        return bool(await redis.ping())
    except Exception:
        return False


StreamEntry = tuple[str, dict[str, str]]


def stream_entries(reply: object) -> list[StreamEntry]:
    """An XRANGE/XREVRANGE reply of a client from `create_redis` (or any client
    with `decode_responses=True`): entry ids and fields are str. Typing only."""
    return cast(list[StreamEntry], reply)
