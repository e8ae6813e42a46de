"""Cost ceilings that hold across runner replicas: reserve, then settle.

Before each model call a runner reserves the call's worst case
(`max_tokens` x output price + the prompt at input price) against BOTH the
run's ceiling and the user's ceiling for the UTC day, so that no
interleaving of replicas can push spend past a ceiling. After the call it
settles the reservation to the real usage (refunding the difference).
Amounts are integer micro-dollars so the counters are exact.

The two counters live under different hash tags (the run's partition, and
the user's day key of its own), and a Redis Cluster runs no script across
slots, so a reservation is two scripts, each atomic on its counter: the
run's first (check its ceiling, add), then the day's (check, add); when the
day refuses, the run's part is given back. The day's script is where
replicas race, and it stays one atomic check-and-add. What the split costs:
between the two calls the run's counter holds an amount the day may still
refuse (only this run's own next reservation could see it, and a run makes
one model call at a time), and a runner that dies between them leaves the
run's counter that much high, exactly what a runner dying between a
reservation and its settle always left (both err towards refusing).

Redis holds the live counters (the hot path); Postgres holds the record of
what was spent (the cost ledger, one row per run, written when the run
finishes, dated by the UTC day it finished; and for runs in flight, the cost
of each model turn they checkpointed). If Redis loses a user's daily counter
(a restart without persistence, an eviction, a failover), a budget given a
`ledger` re-seeds it from that record instead of restarting at zero:

- The day's reserve script answers "missing" instead of reserving (the run's
  part is given back); the budget asks
  the ledger for the user's recorded spend that UTC day and runs the script
  once more with that seed, which SETs the counter (with the counter's usual
  TTL) only if it is still missing, then reserves. Concurrent reservers on any
  number of replicas therefore seed once and never count the ledger twice.
- If the ledger cannot be read, `LedgerUnavailable` is raised and nothing is
  written (the counter stays missing, so the next reserve seeds it).
- Settling never creates a missing counter (nor leaves one below zero): a
  counter without its TTL, or one seeded by a refund, would hide the loss.

What re-seeding cannot recover: the model calls in progress when the counter
was lost (reserved on the lost counter, not checkpointed yet; their settles
on the new one only refund), at most one call's reservation per run in
flight. Conversely a run that spans UTC midnight is in the ledger for the
day it finished, so a re-seed may count its pre-midnight part twice (erring
towards refusing). A budget without a ledger keeps the old behaviour: a
missing counter starts from zero.

Why in the runner: only runners reserve and settle (the gateway only sets a
run's limits; the counters' key names live in `relay_core.keys` with every
other Redis key). The agent loop sees this
class through `relay_agent.SpendGuard` (`spend.RunSpend`), and a refusal is
`relay_agent.BudgetExceeded`, the loop's own exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from relay_agent import BudgetExceeded
from relay_core import keys
from relay_core.rediscalls import RedisCalls

__all__ = [
    "DAY_TTL_S",
    "Budget",
    "BudgetExceeded",
    "DailyLedger",
    "LedgerUnavailable",
    "Reservation",
    "utc_day",
]

log = logging.getLogger(__name__)

MICRO = 1_000_000
DAY_TTL_S = 2 * 86400
# ARGV[6] asking the script to answer "missing" rather than start the counter.
_REPORT_MISSING = -1

# KEYS: the run's counter. ARGV: amount, run limit, run ttl.
# Returns 0 when reserved, 1 when the run ceiling refuses.
_RESERVE_RUN = """
local amount = tonumber(ARGV[1])
local run_now = tonumber(redis.call('GET', KEYS[1]) or '0')
if run_now + amount > tonumber(ARGV[2]) then return 1 end
redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 0
"""

# KEYS: the user's daily counter. ARGV: amount, daily limit, day ttl, seed.
# A missing counter is SET to `seed` (with the day ttl) when seed >= 0; when
# seed is -1 the script answers 3 and changes nothing.
# Returns 0 when reserved, 2 when the daily ceiling refuses, 3 when missing.
_RESERVE_DAY = """
local amount = tonumber(ARGV[1])
local seed = tonumber(ARGV[4])
local day_raw = redis.call('GET', KEYS[1])
if not day_raw then
  if seed < 0 then return 3 end
  redis.call('SET', KEYS[1], seed, 'EX', tonumber(ARGV[3]))
  day_raw = seed
end
if tonumber(day_raw) + amount > tonumber(ARGV[2]) then return 2 end
redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 0
"""

# KEYS: one counter (called once per counter: they live in different slots).
# ARGV: delta (actual - reserved; may be negative).
# A missing counter is left missing (it was lost: the daily one gets re-seeded),
# and none is left below zero (a refund of a reservation made before a loss).
_SETTLE = """
local delta = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local now = redis.call('INCRBY', key, delta)
    if now < 0 then redis.call('INCRBY', key, -now) end
  end
end
return 0
"""

# What a user spent on a UTC day ("YYYY-MM-DD") by the cost ledger, in USD;
# raises `LedgerUnavailable` when it cannot tell.
DailyLedger = Callable[[str, str], Awaitable[float]]


def to_micro(usd: float) -> int:
    return round(usd * MICRO)


def utc_day(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%d")


class LedgerUnavailable(Exception):
    """The daily counter is missing and the ledger to re-seed it could not be read."""


@dataclass(frozen=True)
class Reservation:
    run_key: str
    day_key: str
    amount: int


class Budget:
    """Reserve/settle against a run's and a user's daily ceiling.

    `ledger`: how to read a user's recorded spend for a day, to re-seed a lost
    daily counter (None: a lost counter starts from zero)."""

    def __init__(
        self,
        redis: Redis,
        *,
        run_ttl_s: int = DAY_TTL_S,
        ledger: DailyLedger | None = None,
        calls: RedisCalls | None = None,
    ) -> None:
        self._redis = redis
        self._run_ttl_s = run_ttl_s
        self._ledger = ledger
        self._calls = calls  # the process's coalesced Redis calls (None: one call each)
        self._reserve_run = redis.register_script(_RESERVE_RUN)
        self._reserve_day = redis.register_script(_RESERVE_DAY)
        self._settle = redis.register_script(_SETTLE)

    async def _script(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        if self._calls is not None:
            return await self._calls.script(script, keys, args)
        return await script(keys=keys, args=args)

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
        day = day or utc_day()
        res = Reservation(
            keys.run_cost(run_id), keys.daily_cost(user_id, day), to_micro(amount_usd)
        )
        limits = (to_micro(run_limit_usd), to_micro(daily_limit_usd))
        seed = _REPORT_MISSING if self._ledger is not None else 0
        verdict = await self._run_reserve(res, limits, seed)
        if verdict == 3:
            seed = await self._ledger_seed(user_id, day)
            verdict = await self._run_reserve(res, limits, seed)
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

    async def _run_reserve(self, res: Reservation, limits: tuple[int, int], seed: int) -> int:
        """The run's part, then the day's; the run's is given back if the day's fails.
        Each is a script of one key (one slot), so each may go in the process's
        coalesced pipeline (`RedisCalls`), which a Redis Cluster splits by node."""
        run_args = [res.amount, limits[0], self._run_ttl_s]
        if int(await self._script(self._reserve_run, [res.run_key], run_args)):
            return 1
        day_args = [res.amount, limits[1], DAY_TTL_S, seed]
        verdict = int(await self._script(self._reserve_day, [res.day_key], day_args))
        if verdict:
            await self._script(self._settle, [res.run_key], [-res.amount])
        return verdict

    async def _ledger_seed(self, user_id: str, day: str) -> int:
        assert self._ledger is not None
        spent = await self._ledger(user_id, day)  # raises LedgerUnavailable
        log.warning(
            "daily cost counter missing; re-seeding it from the ledger",
            extra={"user_id": user_id, "day": day},
        )
        return max(0, to_micro(spent))

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        delta = to_micro(actual_usd) - reservation.amount
        if delta:
            # One script per counter (they live in different slots); both go in
            # the same round trip (the coalesced pipeline, or one of their own).
            if self._calls is not None:
                await asyncio.gather(
                    self._script(self._settle, [reservation.run_key], [delta]),
                    self._script(self._settle, [reservation.day_key], [delta]),
                )
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in (reservation.run_key, reservation.day_key):
                    pipe.eval(_SETTLE, 1, key, delta)
                await pipe.execute()

    async def spent_today(self, user_id: str, day: str | None = None) -> float:
        value = await self._redis.get(keys.daily_cost(user_id, day or utc_day()))
        return int(value or 0) / MICRO

    async def spent_by_run(self, run_id: str) -> float:
        return int(await self._redis.get(keys.run_cost(run_id)) or 0) / MICRO
