"""The lease heartbeat: a daemon thread that a busy or blocked event loop cannot starve.

Decisions:
- A dedicated thread with its own synchronous Redis client renews every lease
  this process holds, every `ttl/3`. A run whose tool blocks the event loop,
  or a loop swamped by token writes, still keeps its lease, so a live run is
  never stolen (DESIGN: "a long tool call or model turn is never stolen").
- Renewal is `relay_core.run_protocol.RENEW_LEASE` (its reasons are there):
  compare-and-PEXPIRE on the value `consumer:attempt`, and the refresh of
  the run's queue entry's idle time in the same script. A lease that holds
  another value (a newer attempt took the run) or none at all (it expired, or
  Redis lost it) is LOST: the run is flagged and its loop stops without
  writing anything more. A missing lease is never recreated.
- The script text and its KEYS/ARGV come from `run_protocol`; only the client
  is this thread's own (`run_protocol`'s async functions cannot run here).
- Redis errors are logged and retried at the next beat; the lease TTL is the
  grace period. On a Redis Cluster, while one shard fails over, the leases on
  the other shards are still renewed (`_one_by_one`), and those on the
  failing shard are asked again at the next beat.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis

from relay_core import run_protocol
from relay_core.redis import create_sync_redis

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Held:
    value: str
    entry_id: str


class LeaseKeeper:
    def __init__(
        self,
        redis_url: str,
        *,
        ttl_s: float,
        pool: str,
        consumer: str,
        timeout_s: float = 2.0,
        mode: str = "auto",
    ) -> None:
        self._url = redis_url
        self._mode = mode
        self._ttl_s = ttl_s
        self._interval_s = ttl_s / 3
        self._pool = pool
        self._consumer = consumer
        self._timeout_s = timeout_s
        self._held: dict[str, _Held] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: redis.Redis | redis.RedisCluster | None = None

    def start(self) -> None:
        self._client = create_sync_redis(self._url, timeout_s=self._timeout_s, mode=self._mode)
        self._thread = threading.Thread(target=self._loop, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._client is not None:
            self._client.close()

    def hold(self, run_id: str, value: str, entry_id: str) -> None:
        with self._lock:
            self._held[run_id] = _Held(value, entry_id)
            self._lost.discard(run_id)

    def drop(self, run_id: str) -> None:
        with self._lock:
            self._held.pop(run_id, None)
            self._lost.discard(run_id)

    def lost(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._lost

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.beat()

    def beat(self) -> None:
        """Renew every held lease once; flag the ones that were lost."""
        with self._lock:
            held = dict(self._held)
        if not held or self._client is None:
            return
        try:
            renewed = self._renew(held)
        except redis.RedisError as exc:
            log.warning("lease heartbeat failed: %s", type(exc).__name__)
            return
        gone = [run_id for run_id, ok in renewed.items() if not ok]
        if gone:
            log.warning("leases lost", extra={"runs": gone})
            with self._lock:
                self._lost.update(r for r in gone if r in self._held)

    def _renew(self, held: dict[str, _Held]) -> dict[str, bool]:
        """Run id -> renewed (False: lost). On a cluster a lease whose shard did not
        answer is left out (neither renewed nor lost: asked again at the next beat)."""
        assert self._client is not None
        calls = {run_id: self._call(run_id, h) for run_id, h in held.items()}
        pipe = self._client.pipeline(transaction=False)
        for call in calls.values():
            # EVAL by name: the sync cluster pipeline refuses `.eval()`, but routes
            # the command by its keys (one slot: lease and queue share the run's tag)
            pipe.execute_command(*call)
        try:
            results = pipe.execute(raise_on_error=False)
        except redis.RedisError:
            if not isinstance(self._client, redis.RedisCluster):
                raise
            results = self._one_by_one(list(calls.values()))
        out = {}
        for run_id, res in zip(calls, results, strict=True):
            if isinstance(res, Exception):
                if not isinstance(self._client, redis.RedisCluster):
                    raise res
                continue
            out[run_id] = bool(res)
        return out

    def _call(self, run_id: str, held: _Held) -> list[str | int]:
        lease_keys, args = run_protocol.renew_lease_call(
            run_id=run_id,
            pool=self._pool,
            value=held.value,
            ttl_s=self._ttl_s,
            consumer=self._consumer,
            entry_id=held.entry_id,
        )
        return ["EVAL", run_protocol.RENEW_LEASE, len(lease_keys), *lease_keys, *args]

    def _one_by_one(self, calls: list[list[str | int]]) -> list[object]:
        """Each renewal alone: redis-py's sync cluster pipeline fails as a whole
        while one shard is down, and never refreshes its slot map by itself
        (measured: it kept failing after the replica took over), where a single
        command does both; the leases on the shards that answer stay renewed."""
        assert self._client is not None
        results: list[object] = []
        for call in calls:
            try:
                results.append(self._client.execute_command(*call))
            except redis.RedisError as exc:
                results.append(exc)
        return results
