"""The lease heartbeat: a daemon thread that a busy or blocked event loop cannot starve.

Decisions:
- A dedicated thread with its own synchronous Redis client renews every lease
  this process holds, every `ttl/3`. A run whose tool blocks the event loop,
  or a loop swamped by token writes, still keeps its lease, so a live run is
  never stolen (DESIGN: "a long tool call or model turn is never stolen").
- Renewal is compare-and-PEXPIRE on the value `consumer:attempt`. A lease
  that holds another value (a newer attempt took the run) or none at all
  (it expired, or Redis lost it) is LOST: the run is flagged and its loop
  stops without writing anything more. A missing lease is never recreated:
  a newer attempt may have come and gone, and resurrecting an old attempt's
  lease would let its late events through the fence.
- The same beat refreshes the idle time of the run's queue entry
  (XCLAIM ... JUSTID, which does not count as a delivery), so XAUTOCLAIM in
  other runners, which takes entries idle longer than the lease TTL, only
  ever finds the entries of dead runners. Both happen in one script, and the
  XCLAIM only while the lease is still ours: a runner that wakes up from a
  pause (SIGSTOP, a VM freeze) must not pull back the entry that the runner
  which took the run over now owns.
- Redis errors are logged and retried at the next beat; the lease TTL is the
  grace period.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis

from relay_core import keys

__all__ = ["RELEASE_LEASE", "RENEW_LEASE", "LeaseKeeper"]

log = logging.getLogger(__name__)

# KEYS: lease, queue. ARGV: value, ttl ms, group, consumer, entry id. 1 renewed, 0 lost.
# The XCLAIM may fail (no group: Redis lost its data); the renewal still counts.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.pcall('XCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, ARGV[5], 'JUSTID')
return 1
"""

# KEYS: lease. ARGV: value. Deletes only our own lease.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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
        queue: str,
        consumer: str,
        timeout_s: float = 2.0,
    ) -> None:
        self._url = redis_url
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._interval_s = ttl_s / 3
        self._queue = queue
        self._consumer = consumer
        self._timeout_s = timeout_s
        self._held: dict[str, _Held] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: redis.Redis | None = None

    def start(self) -> None:
        self._client = redis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_timeout=self._timeout_s,
            socket_connect_timeout=self._timeout_s,
        )
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
        assert self._client is not None
        runs = list(held)
        pipe = self._client.pipeline(transaction=False)
        for run_id in runs:
            pipe.eval(
                RENEW_LEASE,
                2,
                keys.lease(run_id),
                self._queue,
                held[run_id].value,
                self._ttl_ms,
                keys.RUNNERS_GROUP,
                self._consumer,
                held[run_id].entry_id,
            )
        results = pipe.execute(raise_on_error=False)
        out = {}
        for run_id, res in zip(runs, results, strict=True):
            if isinstance(res, Exception):
                raise res
            out[run_id] = bool(res)
        return out
