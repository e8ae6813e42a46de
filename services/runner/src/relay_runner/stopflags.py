"""The cancel flags and the kill switch of every run in flight here, read in one round trip.

Why: each run used to ask Redis for its own cancel flag and the kill switch
(one MGET) every `cancel_check_s`: at 200 runs in flight, 2000 round trips a
second, a large share of the runner's CPU. Now one task per process reads
the flags of all its runs and the kill switch in ONE MGET every
`cancel_check_s`, and a run's `should_stop` reads the answer from memory, so
a cancel is still seen within `cancel_check_s` (plus one round trip).

Decisions:
- On a Redis Cluster the flags live in their runs' partitions (and the kill
  switch in a slot of its own): the one MGET becomes one per slot, sent as
  one pipeline by redis-py (`relay_core.redis.mget`), so it is still one
  round trip per node.
- A run's first check asks Redis itself (its own flag and the kill switch),
  as before, so a run claimed while the kill switch is on stops before its
  first model call, without waiting for the next poll. That look goes in the
  process's coalesced pipeline (`RedisCalls`): one MGET, or on a cluster one
  GET per key in the same pipeline.
- What is seen is kept: a run seen cancelled (or under the kill switch) stays
  stopped even if the flag expires or the switch is turned off meanwhile;
  a cancel seen later wins over the kill switch (the run ends `cancelled`).
- The poll task runs only while runs are watched: the first `check` of a run
  starts it, it ends by itself when the last run is `forget`-ten.
- Redis down: the poll fails, what was seen stands, and the runs go on (their
  lease decides, as before); one warning per outage.
- This is the fast path only: the durable cancel (Postgres, on every
  checkpoint answer) is honoured by the execution as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core import keys
from relay_core.events import StopReason
from relay_core.redis import is_cluster, mget
from relay_core.rediscalls import RedisCalls

__all__ = ["MIN_INTERVAL_S", "StopFlags"]

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.005  # `cancel_check_s=0` polls this often, never in a busy loop


def _switch_on(value: str | bytes | None) -> bool:
    return bool(value) and value not in ("0", "false", b"0", b"false")


class StopFlags:
    """One per process: `check(run_id)` is the run's stop reason as last seen."""

    def __init__(self, redis: Redis, *, interval_s: float, calls: RedisCalls | None = None) -> None:
        self._redis = redis
        self._calls = calls  # a run's first check goes with the other runs' calls
        self._interval_s = max(interval_s, MIN_INTERVAL_S)
        self._reasons: dict[str, StopReason | None] = {}  # watched runs and what was seen
        self._poller: asyncio.Task[None] | None = None
        self._failing = False
        self.polls = 0  # MGETs made by the poll task, for tests

    @property
    def watched(self) -> int:
        return len(self._reasons)

    @property
    def polling(self) -> bool:
        return self._poller is not None

    async def check(self, run_id: str) -> StopReason | None:
        """`cancelled`, `kill_switch` or None; the first check of a run asks Redis."""
        if run_id not in self._reasons:
            self._reasons[run_id] = None
            self._ensure_poller()
            await self._read([run_id], first=True)
        return self._reasons.get(run_id)

    def forget(self, run_id: str) -> None:
        self._reasons.pop(run_id, None)

    async def aclose(self) -> None:
        self._reasons.clear()
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)

    def _ensure_poller(self) -> None:
        if self._poller is None:
            # A fresh context: the poller serves every run, it belongs to none.
            self._poller = asyncio.create_task(self._poll(), context=contextvars.Context())

    async def _poll(self) -> None:
        try:
            while self._reasons:
                await asyncio.sleep(self._interval_s)
                if self._reasons:
                    self.polls += 1
                    await self._read(list(self._reasons))
        finally:
            self._poller = None

    async def _first_read(self, names: list[str]) -> list[Any]:
        """A run's first look, in the process's coalesced pipeline: one MGET; on a
        Redis Cluster one GET per key (the run's flag and the switch are in two
        slots, and a pipeline's MGET may not span slots), in the same pipeline."""
        assert self._calls is not None
        if is_cluster(self._redis):
            return list(await asyncio.gather(*(self._calls.command("GET", n) for n in names)))
        return list(await self._calls.command("MGET", *names))

    async def _read(self, runs: list[str], *, first: bool = False) -> None:
        names = [*map(keys.cancel, runs), keys.KILL_SWITCH]
        try:
            if first and self._calls is not None:
                values = await self._first_read(names)
            else:
                values = await mget(self._redis, names)
        except RedisError as exc:
            if not self._failing:
                log.warning("cannot read the cancel flags: %s; runs go on", type(exc).__name__)
            self._failing = True
            return
        if self._failing:
            log.info("cancel flags readable again")
        self._failing = False
        kill = _switch_on(values[-1])
        for run_id, flag in zip(runs, values, strict=False):
            if run_id not in self._reasons:
                continue  # forgotten during the read
            if flag:
                self._reasons[run_id] = "cancelled"
            elif kill and self._reasons[run_id] is None:
                self._reasons[run_id] = "kill_switch"
