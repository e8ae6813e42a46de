"""Admission to a runner pool: a slot only when one is free, each tenant its share, in turn.

Interactive runs must not queue behind each other silently: the gateway
admits a run only if the pool's live capacity (the sum of what every live
runner advertises) exceeds the runs already admitted, and otherwise waits up to
`RELAY_INTERACTIVE_QUEUE_TIMEOUT_S` before answering 429 with `Retry-After`.

- Runners advertise `capacity` under their consumer name with an expiry,
  refreshed by their heartbeat; a dead runner's capacity lapses by itself.
- An admission is a member of a sorted set scored by its expiry (a bound on a
  run's life), so a lost release (a crashed gateway) frees the slot anyway.
  The slot is given back by id when the run ends (`run_protocol.write_done`)
  or is never created (`run_protocol.release_slots`).

Fairness (a tenant holding 12 long chats took all 8 slots of `make dev`'s
pool, and every other tenant's chat waited 10 s for its 429):

- **A share per tenant.** A tenant (a user) holds at most
  `floor(share * live capacity)` slots (at least 1) at any time, `share`
  being its key's `interactive_share`, else the gateway's
  `RELAY_INTERACTIVE_TENANT_SHARE` (half). Runs cannot be pre-empted, so the
  share holds whatever the load: a tenant alone on an idle pool still uses
  only its share, and the rest is what another tenant's chat starts on at
  once. A tenant's slots are a sorted set of its own
  (`keys.pool_user_admitted`), released with the pool's.
- **Waiting tenants in turn.** A request that finds no room joins its
  tenant's queue (oldest first, `keys.pool_user_waiting`), and the tenant
  joins the pool's rotation (`keys.pool_waiting`, ordered by when each
  tenant was last served). A free slot goes to the oldest live request of
  the first tenant in the rotation that is under its share; that tenant then
  goes to the back. So with tenants A (ten waiting) and B (one waiting) the
  slots go A, B, A, A... instead of to whoever asked first, and a newcomer
  takes a free slot at once only when no one eligible is waiting. Each
  waiting request beats a heartbeat on every poll (`keys.pool_waiting_alive`);
  one whose gateway stopped polling (gone, crashed) is dropped after
  `ALIVE_TTL_MS`, so it cannot hold the line.

A caller that names no tenant (`user_id=""`) gets a free slot or none, with
neither share nor turn: the gateway always names one.

All of it is one Lua script (prune, sum the capacity, count the tenant's
slots, find who is next, admit or join the queue), so any number of gateway
replicas agree. The script reads each waiting tenant's keys by name (built
from prefixes `keys` gives it). Every one of those keys, the declared and
the built, has the pool as its hash tag (`relay:admitted:{interactive}:<user>`),
so all are in one slot and the script runs on a Redis Cluster too. The
user's own concurrent-run slot is not part of it (another tag): the gateway
takes that first (`relay_gateway.admit_script`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core import keys

log = logging.getLogger(__name__)

# A waiting request that has not polled for this long has given up.
ALIVE_TTL_MS = 2000
# Tenants of the rotation looked at per admission (those past it wait their turn).
ROTATION_SCAN = 16

# KEYS: 1 capacity hash, 2 admitted zset, 3 rotation zset (waiting tenant -> turn),
#       4 shares hash (waiting tenant -> share), 5 alive zset (waiting run -> last poll).
# ARGV: 1 now ms, 2 run id, 3 admission expiry ms, 4 tenant, 5 its share (0-1],
#       6 prefix of a tenant's admitted zset, 7 prefix of a tenant's queue zset,
#       8 alive ttl ms, 9 "1": join (or stay in) the queue when not admitted,
#       10 how many tenants of the rotation to look at.
# Returns {admitted (0/1), free slots before, live capacity}.
_ADMIT = """
local now = tonumber(ARGV[1])
local run, tenant = ARGV[2], ARGV[4]
local held_prefix, queue_prefix = ARGV[6], ARGV[7]
local alive_ttl = tonumber(ARGV[8])
-- Redis's clock in µs orders the waiting: a tenant's requests, and the tenants'
-- turns, even within one millisecond and across gateways.
local clock = redis.call('TIME')
local turn = clock[1] * 1000000 + clock[2]
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - alive_ttl)
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
if redis.call('ZSCORE', KEYS[2], run) then return {1, cap - used, cap} end

local function held(t)
  local k = held_prefix .. t
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  return redis.call('ZCARD', k)
end
local function limit(share)
  local n = math.floor(cap * share + 1e-9)
  if n < 1 then n = 1 end
  return n
end
local function head(t)
  local q = queue_prefix .. t
  while true do
    local first = redis.call('ZRANGE', q, 0, 0)
    if #first == 0 then return nil end
    if redis.call('ZSCORE', KEYS[5], first[1]) then return first[1] end
    redis.call('ZREM', q, first[1])
  end
end
local function next_in_line()
  local tenants = redis.call('ZRANGE', KEYS[3], 0, tonumber(ARGV[10]) - 1)
  for i = 1, #tenants do
    local t = tenants[i]
    local h = head(t)
    if h == nil then
      redis.call('ZREM', KEYS[3], t)
      redis.call('HDEL', KEYS[4], t)
    elseif held(t) < limit(tonumber(redis.call('HGET', KEYS[4], t) or '1')) then
      return h
    end
  end
  return nil
end

local free = cap - used
if tenant == '' then  -- no tenant (a caller outside the gateway): no share, no turn
  if free <= 0 then return {0, free, cap} end
  redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), run)
  return {1, free, cap}
end
if free > 0 and held(tenant) < limit(tonumber(ARGV[5])) then
  local nxt = next_in_line()
  if nxt == nil or nxt == run then
    local expiry = tonumber(ARGV[3])
    redis.call('ZADD', KEYS[2], expiry, run)
    local hk = held_prefix .. tenant
    redis.call('ZADD', hk, expiry, run)
    redis.call('PEXPIRE', hk, math.max(1, expiry - now))
    local q = queue_prefix .. tenant
    if redis.call('ZREM', q, run) == 1 then
      redis.call('ZREM', KEYS[5], run)
      if redis.call('ZCARD', q) == 0 then
        redis.call('ZREM', KEYS[3], tenant)
        redis.call('HDEL', KEYS[4], tenant)
      else
        redis.call('ZADD', KEYS[3], turn, tenant)
      end
    end
    return {1, free, cap}
  end
end
if ARGV[9] == '1' then
  local q = queue_prefix .. tenant
  redis.call('ZADD', q, 'NX', turn, run)
  redis.call('PEXPIRE', q, 60000)
  redis.call('ZADD', KEYS[5], now, run)
  redis.call('ZADD', KEYS[3], 'NX', turn, tenant)
  redis.call('HSET', KEYS[4], tenant, ARGV[5])
end
return {0, free, cap}
"""

# KEYS: rotation zset, shares hash, alive zset, the tenant's queue zset. ARGV: run, tenant.
_LEAVE = """
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('ZCARD', KEYS[4]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
"""

# The admission script, public for a caller that runs it by EVAL itself (the
# gateway, right after taking the user's slot: `relay_gateway.admit_script`).
ADMIT_SCRIPT = _ADMIT


def _now_ms() -> int:
    return int(time.time() * 1000)


def admit_keys(pool: str) -> list[str]:
    """KEYS of `ADMIT_SCRIPT` for `pool`."""
    return [
        keys.pool_capacity(pool),
        keys.pool_admitted(pool),
        keys.pool_waiting(pool),
        keys.pool_shares(pool),
        keys.pool_waiting_alive(pool),
    ]


def admit_args(
    pool: str, *, run_id: str, user_id: str, share: float, max_run_s: float, wait: bool
) -> list[str | int | float]:
    """ARGV of `ADMIT_SCRIPT` (now, from this process's clock)."""
    now = _now_ms()
    return [
        now,
        run_id,
        now + int(max_run_s * 1000),
        user_id,
        share,
        keys.pool_user_admitted(pool, ""),
        keys.pool_user_waiting(pool, ""),
        ALIVE_TTL_MS,
        "1" if wait else "0",
        ROTATION_SCAN,
    ]


class PoolCapacity:
    def __init__(self, redis: Redis, pool: str) -> None:
        self._redis = redis
        self.pool = pool
        self._admit = redis.register_script(_ADMIT)
        self._leave = redis.register_script(_LEAVE)

    async def advertise(self, consumer: str, capacity: int, *, ttl_s: float) -> None:
        """A runner's heartbeat: `capacity` slots, valid for `ttl_s`."""
        expires = _now_ms() + int(ttl_s * 1000)
        await self._redis.hset(keys.pool_capacity(self.pool), consumer, f"{capacity}:{expires}")

    async def withdraw(self, consumer: str) -> None:
        await self._redis.hdel(keys.pool_capacity(self.pool), consumer)

    async def try_admit(
        self,
        run_id: str,
        *,
        max_run_s: float,
        user_id: str = "",
        share: float = 1.0,
        wait: bool = False,
    ) -> bool:
        """Admit `run_id` now, or not; with `wait`, a refused run joins (or stays
        in) its tenant's queue: call `leave` when giving up."""
        args = admit_args(
            self.pool, run_id=run_id, user_id=user_id, share=share, max_run_s=max_run_s, wait=wait
        )
        admitted, _, _ = await self._admit(keys=admit_keys(self.pool), args=args)
        return bool(int(admitted))

    async def leave(self, run_id: str, *, user_id: str = "") -> None:
        """`run_id` stops waiting (admitted elsewhere, refused, or its client left)."""
        await self._leave(
            keys=[
                keys.pool_waiting(self.pool),
                keys.pool_shares(self.pool),
                keys.pool_waiting_alive(self.pool),
                keys.pool_user_waiting(self.pool, user_id),
            ],
            args=[run_id, user_id],
        )

    async def admit(
        self,
        run_id: str,
        *,
        wait_s: float,
        max_run_s: float,
        user_id: str = "",
        share: float = 1.0,
        poll_s: float = 0.05,
    ) -> bool:
        """Admit within `wait_s`, in turn with the other waiting tenants, or False
        (the caller answers 429). The run leaves the queue either way."""
        deadline = time.monotonic() + wait_s
        try:
            while True:
                if await self.try_admit(
                    run_id, max_run_s=max_run_s, user_id=user_id, share=share, wait=True
                ):
                    return True
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(poll_s)
        finally:
            try:
                await asyncio.shield(self.leave(run_id, user_id=user_id))
            except (RedisError, OSError, TimeoutError) as exc:  # its heartbeat lapses instead
                log.warning("could not leave the pool's queue (%s)", type(exc).__name__)

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
