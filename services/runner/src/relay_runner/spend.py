"""The run's spend guard: the agent loop reserves each model call's worst case
against the run's ceiling and the user's daily ceiling before the call goes
out, and settles it to the real usage after (`relay_runner.budget`, atomic in
Redis, so concurrent runs of one user on any number of replicas can never
spend past the daily ceiling).

The worst case is the prompt at the input price (about 3 characters a token,
rounded up: an over-estimate for English text) plus `max_tokens` at the output
price. If Redis cannot be asked, the call goes ahead: the run's own post-hoc
ceiling in the agent loop still holds, and a Redis outage stops the run's
event writes long before it could run up a bill.

A daily counter Redis lost is re-seeded from state's cost ledger
(`ledger_from`, given to `Budget` at start-up; see `relay_runner.budget`). If
state cannot be asked either, the call goes ahead unreserved, on the same
grounds, and the counter stays missing so the next call seeds it; a state
that predates the ledger endpoint (404/405) seeds 0, the old behaviour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.exceptions import RedisError

from relay_core.models import ModelSpec, cost_usd
from relay_core.state_client import StateClient, StateError
from relay_runner.budget import Budget, DailyLedger, LedgerUnavailable, Reservation

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3
DEFAULT_RUN_LIMIT_USD = 1.0
DEFAULT_DAILY_LIMIT_USD = 20.0


def ledger_from(state: StateClient) -> DailyLedger:
    """The user's spend for a UTC day by state's cost ledger, for `Budget`."""

    async def spent(user_id: str, day: str) -> float:
        try:
            return (await state.daily_spend(user_id=user_id, day=day)).cost_usd
        except StateError as exc:
            if exc.status in (404, 405):  # a state that predates the endpoint
                log.warning("state has no daily spend endpoint; the lost counter starts at 0")
                return 0.0
            raise LedgerUnavailable(f"state: {type(exc).__name__}") from exc

    return spent


@dataclass
class RunSpend:
    budget: Budget
    run_id: str
    user_id: str
    run_limit_usd: float
    daily_limit_usd: float

    async def reserve(
        self, spec: ModelSpec, *, max_tokens: int, prompt_chars: int
    ) -> Reservation | None:
        worst = cost_usd(spec, prompt_chars // CHARS_PER_TOKEN + 1, max_tokens)
        try:
            return await self.budget.reserve(
                run_id=self.run_id,
                user_id=self.user_id,
                amount_usd=worst,
                run_limit_usd=self.run_limit_usd,
                daily_limit_usd=self.daily_limit_usd,
            )
        except RedisError as exc:
            log.warning("spend not reserved (Redis): %s", type(exc).__name__)
            return None
        except LedgerUnavailable as exc:
            log.warning("spend not reserved (daily counter lost, ledger unreadable): %s", exc)
            return None

    async def settle(self, reservation: Reservation | None, cost: float) -> None:
        if reservation is None:
            return
        try:
            await self.budget.settle(reservation, cost)
        except RedisError as exc:
            log.warning("spend not settled (Redis): %s", type(exc).__name__)
