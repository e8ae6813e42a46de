"""Cost ceilings that hold across runner replicas: reserve, then settle.

Before each model call a runner reserves the call's worst case
(`max_tokens` x output price + the prompt at input price) against BOTH the
run's ceiling and the user's ceiling for the UTC day, in one Lua script, so
the reservation fits both or neither and no interleaving of replicas can push
spend past a ceiling. After the call it settles the reservation to the real
usage (refunding the difference). Amounts are integer micro-dollars so the
counters are exact.

Redis holds the live counters (the hot path); the cost ledger in Postgres is
the record of what was spent. If Redis loses the counters, today's spend
restarts from zero for the day: the ledger is the audit trail, and the
ceilings err towards allowing a run rather than blocking every user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from relay_core import keys

MICRO = 1_000_000
DAY_TTL_S = 2 * 86400

# KEYS: run counter, daily counter. ARGV: amount, run limit, daily limit, run ttl, day ttl.
# Returns 0 when reserved, 1 when the run ceiling refuses, 2 when the daily one does.
_RESERVE = """
local amount = tonumber(ARGV[1])
local run_now = tonumber(redis.call('GET', KEYS[1]) or '0')
local day_now = tonumber(redis.call('GET', KEYS[2]) or '0')
if run_now + amount > tonumber(ARGV[2]) then return 1 end
if day_now + amount > tonumber(ARGV[3]) then return 2 end
redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('INCRBY', KEYS[2], amount)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
return 0
"""

# KEYS: run counter, daily counter. ARGV: delta (actual - reserved; may be negative).
_SETTLE = """
local delta = tonumber(ARGV[1])
redis.call('INCRBY', KEYS[1], delta)
redis.call('INCRBY', KEYS[2], delta)
return 0
"""


def to_micro(usd: float) -> int:
    return round(usd * MICRO)


def utc_day(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%d")


class BudgetExceeded(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "cost_budget_exceeded" | "daily_budget_exceeded"


@dataclass(frozen=True)
class Reservation:
    run_key: str
    day_key: str
    amount: int


class Budget:
    """Reserve/settle against a run's and a user's daily ceiling."""

    def __init__(self, redis: Redis, *, run_ttl_s: int = DAY_TTL_S) -> None:
        self._redis = redis
        self._run_ttl_s = run_ttl_s
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    async def reserve(
        self,
        *,
        run_id: str,
        user_id: str,
        amount_usd: float,
        run_limit_usd: float,
        daily_limit_usd: float,
        day: str | None = None,
    ) -> Reservation:
        res = Reservation(
            keys.run_cost(run_id), keys.daily_cost(user_id, day or utc_day()), to_micro(amount_usd)
        )
        verdict = int(
            await self._reserve(
                keys=[res.run_key, res.day_key],
                args=[
                    res.amount,
                    to_micro(run_limit_usd),
                    to_micro(daily_limit_usd),
                    self._run_ttl_s,
                    DAY_TTL_S,
                ],
            )
        )
        if verdict == 1:
            raise BudgetExceeded(
                "cost_budget_exceeded", f"the run's cost ceiling of ${run_limit_usd:.4f} is reached"
            )
        if verdict == 2:
            raise BudgetExceeded(
                "daily_budget_exceeded",
                f"today's cost ceiling of ${daily_limit_usd:.2f} is reached",
            )
        return res

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        delta = to_micro(actual_usd) - reservation.amount
        if delta:
            await self._settle(keys=[reservation.run_key, reservation.day_key], args=[delta])

    async def spent_today(self, user_id: str, day: str | None = None) -> float:
        value = await self._redis.get(keys.daily_cost(user_id, day or utc_day()))
        return int(value or 0) / MICRO

    async def spent_by_run(self, run_id: str) -> float:
        return int(await self._redis.get(keys.run_cost(run_id)) or 0) / MICRO
