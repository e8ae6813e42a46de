"""Admission to a runner pool: a run is admitted only when a runner slot is free.

Interactive runs must not queue behind each other silently: the gateway
admits a run only if the pool's live capacity (the sum of what every live
runner advertises) exceeds the runs already admitted, and otherwise waits up to
`RELAY_INTERACTIVE_QUEUE_TIMEOUT_S` before answering 429 with `Retry-After`.

- Runners advertise `capacity` under their consumer name with an expiry,
  refreshed by their heartbeat; a dead runner's capacity lapses by itself.
- An admission is a member of a sorted set scored by its expiry (a bound on a
  run's life), so a lost release (a crashed gateway) frees the slot anyway.
- Admit is one Lua script (prune, sum, compare, add), so two gateways cannot
  both take the last slot. Its two keys share the pool as their hash tag
  (`relay:capacity:{interactive}`), so it runs on a Redis Cluster too. The
  slot is given back by id when the run ends (`run_protocol.write_done`) or
  is never created (`run_protocol.release_slots`).
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from relay_core import keys

# KEYS: capacity hash, admitted zset. ARGV: now_ms, run_id, admission_expiry_ms.
# Returns {admitted (0/1), free slots before, live capacity}.
_ADMIT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local cap = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local value = entries[i + 1]
  local sep = string.find(value, ':')
  local expires = tonumber(string.sub(value, sep + 1))
  if expires > now then
    cap = cap + tonumber(string.sub(value, 1, sep - 1))
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
local used = redis.call('ZCARD', KEYS[2])
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then return {1, cap - used, cap} end
if used >= cap then return {0, cap - used, cap} end
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[2])
return {1, cap - used, cap}
"""


# The admission script, public for a caller that runs it by EVAL itself (the
# gateway, right after taking the user's slot: `relay_gateway.admit_script`).
ADMIT_SCRIPT = _ADMIT


def _now_ms() -> int:
    return int(time.time() * 1000)


class PoolCapacity:
    def __init__(self, redis: Redis, pool: str) -> None:
        self._redis = redis
        self.pool = pool
        self._admit = redis.register_script(_ADMIT)

    async def advertise(self, consumer: str, capacity: int, *, ttl_s: float) -> None:
        """A runner's heartbeat: `capacity` slots, valid for `ttl_s`."""
        expires = _now_ms() + int(ttl_s * 1000)
        await self._redis.hset(keys.pool_capacity(self.pool), consumer, f"{capacity}:{expires}")

    async def withdraw(self, consumer: str) -> None:
        await self._redis.hdel(keys.pool_capacity(self.pool), consumer)

    async def try_admit(self, run_id: str, *, max_run_s: float) -> bool:
        now = _now_ms()
        admitted, _, _ = await self._admit(
            keys=[keys.pool_capacity(self.pool), keys.pool_admitted(self.pool)],
            args=[now, run_id, now + int(max_run_s * 1000)],
        )
        return bool(int(admitted))

    async def admit(
        self, run_id: str, *, wait_s: float, max_run_s: float, poll_s: float = 0.05
    ) -> bool:
        """Admit within `wait_s`, or False (the caller answers 429)."""
        deadline = time.monotonic() + wait_s
        while True:
            if await self.try_admit(run_id, max_run_s=max_run_s):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll_s)

    async def usage(self) -> tuple[int, int]:
        """(admitted, live capacity) right now."""
        admitted_count = await self._redis.zcount(keys.pool_admitted(self.pool), _now_ms(), "+inf")
        raw = await self._redis.hgetall(keys.pool_capacity(self.pool))
        now = _now_ms()
        cap = 0
        for value in raw.values():
            slots, _, expires = str(value).partition(":")
            if int(expires) > now:
                cap += int(slots)
        return int(admitted_count), cap
