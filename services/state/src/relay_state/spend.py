"""A user's recorded spend for a UTC day, from the cost ledger.

The runners keep the live daily counters in Redis; when one is lost (a Redis
restart without persistence, an eviction, a failover) they re-seed it from
here, so the day's spend does not restart from zero. The ledger has one row
per finished run, dated by the UTC day it finished (`cost_ledger.day`, the
same day the counter's key names), so this is the spend of the runs that
finished that day; runs still in flight are not in it yet. Scoped to the user:
another user's id simply has no rows (0), nothing else is revealed.
"""

from __future__ import annotations

from datetime import date

from relay_core.state_api import DailySpendOut
from relay_state import rows
from relay_state.db import Database

# Served by the (user_id, day) index.
DAILY_SPEND = """
    SELECT coalesce(sum(cost_usd), 0) AS cost_usd, count(*) AS runs
    FROM cost_ledger WHERE user_id = $1 AND day = $2
"""


async def daily_spend(*, db: Database, user_id: str, day: date) -> DailySpendOut:
    async with db.connection() as conn:
        row = await conn.fetchrow(DAILY_SPEND, user_id, day)
    assert row is not None  # an aggregate always answers one row
    return DailySpendOut(
        user_id=user_id, day=day, cost_usd=rows.money(row["cost_usd"]) or 0.0, runs=row["runs"]
    )
