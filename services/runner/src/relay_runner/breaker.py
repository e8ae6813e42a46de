"""A circuit breaker per (provider, model), shared by every runner through Redis.

One replica's knowledge of an outage protects all of them: the counters and
the state live in one Redis hash per (provider, model), updated by Lua so
replicas never race.

- closed: calls pass; outcomes are counted in fixed windows of `window_s`
  (the current and the previous window are both weighed, so the rate does not
  reset to zero at a window edge). When at least `min_calls` were seen and
  the failure rate reaches `failure_rate`, the breaker opens.
- open: calls fail fast for `open_s`.
- half-open: after `open_s`, ONE caller gets a probe (a lease of `probe_ttl_s`,
  so a probe whose runner died does not wedge the breaker); its success closes
  the breaker, its failure opens it again.

Time comes from the caller (Redis TIME would be the alternative; the runners'
clocks are NTP-synced and a skew of a second only shifts a window).

Why in the runner: only runners call models. The agent loop sees a breaker
through `relay_agent.ModelGate` (`gate.BreakerGate`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from relay_core import keys
from relay_core.rediscalls import RedisCalls

State = Literal["closed", "open", "half_open"]
STATE_VALUES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}

# KEYS[1] breaker hash. ARGV: now_ms, open_ms, probe_ms.
# Returns {allowed (0/1), state}.
_ALLOW = """
local h = KEYS[1]
local now = tonumber(ARGV[1])
local state = redis.call('HGET', h, 'state') or 'closed'
if state == 'closed' then return {1, 'closed'} end
local until_ms = tonumber(redis.call('HGET', h, 'open_until') or '0')
if state == 'open' and now < until_ms then return {0, 'open'} end
local probe_until = tonumber(redis.call('HGET', h, 'probe_until') or '0')
if now < probe_until then return {0, 'half_open'} end
redis.call('HSET', h, 'state', 'half_open', 'probe_until', now + tonumber(ARGV[3]))
return {1, 'half_open'}
"""

# KEYS[1] breaker hash. ARGV: now_ms, ok (0/1), window_ms, min_calls, rate, open_ms, ttl_s.
# Returns the state after recording.
_RECORD = """
local h = KEYS[1]
local now = tonumber(ARGV[1])
local ok = tonumber(ARGV[2]) == 1
local window = tonumber(ARGV[3])
local state = redis.call('HGET', h, 'state') or 'closed'
redis.call('EXPIRE', h, tonumber(ARGV[7]))
if state == 'half_open' or state == 'open' then
  if ok then
    redis.call('DEL', h)
    return 'closed'
  end
  redis.call('HSET', h, 'state', 'open', 'open_until', now + tonumber(ARGV[6]), 'probe_until', 0)
  return 'open'
end
local idx = math.floor(now / window)
local cur = tonumber(redis.call('HGET', h, 'win') or '-1')
if cur ~= idx then
  local calls, fails = 0, 0
  if cur == idx - 1 then
    calls = tonumber(redis.call('HGET', h, 'calls') or '0')
    fails = tonumber(redis.call('HGET', h, 'fails') or '0')
  end
  redis.call('HSET', h, 'win', idx, 'prev_calls', calls, 'prev_fails', fails)
  redis.call('HSET', h, 'calls', 0, 'fails', 0)
end
redis.call('HINCRBY', h, 'calls', 1)
if not ok then redis.call('HINCRBY', h, 'fails', 1) end
local weight = 1 - ((now % window) / window)
local function count(field, prev)
  local c = tonumber(redis.call('HGET', h, field) or '0')
  return c + weight * tonumber(redis.call('HGET', h, prev) or '0')
end
local calls = count('calls', 'prev_calls')
local fails = count('fails', 'prev_fails')
if calls >= tonumber(ARGV[4]) and fails / calls >= tonumber(ARGV[5]) then
  redis.call('HSET', h, 'state', 'open', 'open_until', now + tonumber(ARGV[6]), 'probe_until', 0)
  return 'open'
end
return 'closed'
"""


@dataclass(frozen=True)
class BreakerPolicy:
    window_s: float = 30.0
    min_calls: int = 5
    failure_rate: float = 0.5
    open_s: float = 15.0
    probe_ttl_s: float = 30.0


class CircuitBreakers:
    """Every (provider, model) breaker, backed by one Redis."""

    def __init__(
        self, redis: Redis, policy: BreakerPolicy | None = None, *, calls: RedisCalls | None = None
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._allow = redis.register_script(_ALLOW)
        self._record = redis.register_script(_RECORD)
        self._redis = redis
        self._calls = calls  # the process's coalesced Redis calls (None: one call each)

    async def _script(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        if self._calls is not None:
            return await self._calls.script(script, keys, args)
        return await script(keys=keys, args=args)

    @staticmethod
    def _now_ms(now: float | None) -> int:
        return int((time.time() if now is None else now) * 1000)

    async def allow(self, provider: str, model: str, *, now: float | None = None) -> bool:
        """Whether a call may go out now (False: fail fast, use the fallback)."""
        p = self.policy
        allowed, _ = await self._script(
            self._allow,
            [keys.breaker(provider, model)],
            [self._now_ms(now), int(p.open_s * 1000), int(p.probe_ttl_s * 1000)],
        )
        return bool(int(allowed))

    async def record(
        self, provider: str, model: str, *, ok: bool, now: float | None = None
    ) -> State:
        p = self.policy
        state = await self._script(
            self._record,
            [keys.breaker(provider, model)],
            [
                self._now_ms(now),
                1 if ok else 0,
                int(p.window_s * 1000),
                p.min_calls,
                p.failure_rate,
                int(p.open_s * 1000),
                int(max(p.window_s * 4, p.open_s * 4)),
            ],
        )
        return _as_state(state)

    async def state(self, provider: str, model: str) -> State:
        value = await self._redis.hget(keys.breaker(provider, model), "state")
        return _as_state(value)


def _as_state(value: object) -> State:
    text = value.decode() if isinstance(value, bytes) else str(value or "closed")
    if text == "open":
        return "open"
    return "half_open" if text == "half_open" else "closed"
