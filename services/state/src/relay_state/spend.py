"""A user's recorded spend for a UTC day, from the cost ledger.

The runners keep the live daily counters in Redis; when one is lost (a Redis
restart without persistence, an eviction, a failover) they re-seed it from
here, so the day's spend does not restart from zero. Two parts, read in one
statement (one snapshot, so a run finishing meanwhile is counted once):

- the ledger: one row per finished run, dated by the UTC day it finished
  (`cost_ledger.day`, the same day the counter's key names);
- runs still in flight (queued or running): the cost of the model turns they
  checkpointed that UTC day (each `model_turn` checkpoint carries its
  `cost_usd`). What is not there yet: the model call in progress, bounded by
  its reservation.

Scoped to the user: another user's id simply has no rows (0), nothing else
is revealed.
"""

from __future__ import annotations

from datetime import date

from relay_core.state_api import DailySpendOut, DailyTotalOut
from relay_state import rows
from relay_state.db import Database

# The ledger part is served by the (user_id, day) index; the in-flight part by
# the partial index of runs in flight, then the checkpoints' (run_id, ...) one.
DAILY_SPEND = """
    WITH finished AS (
        SELECT coalesce(sum(cost_usd), 0) AS cost_usd, count(*) AS runs
        FROM cost_ledger WHERE user_id = $1 AND day = $2
    ), in_flight AS (
        SELECT coalesce(sum((c.payload->>'cost_usd')::numeric), 0) AS cost_usd,
               count(DISTINCT r.id) AS runs
        FROM runs r JOIN run_checkpoints c ON c.run_id = r.id
        WHERE r.user_id = $1 AND r.status IN ('queued', 'running')
          AND c.kind = 'model_turn' AND (c.created_at AT TIME ZONE 'UTC')::date = $2
          AND jsonb_typeof(c.payload->'cost_usd') = 'number'
    )
    SELECT f.cost_usd + i.cost_usd AS cost_usd, f.runs, i.runs AS runs_in_flight
    FROM finished f, in_flight i
"""


async def daily_spend(*, db: Database, user_id: str, day: date) -> DailySpendOut:
    async with db.connection() as conn:
        row = await conn.fetchrow(DAILY_SPEND, user_id, day)
    assert row is not None  # an aggregate always answers one row
    return DailySpendOut(
        user_id=user_id,
        day=day,
        cost_usd=rows.money(row["cost_usd"]) or 0.0,
        runs=row["runs"],
        runs_in_flight=row["runs_in_flight"],
    )


# Every user's: the ledger part by `cost_ledger_day_idx` (migration 0003).
DAILY_TOTAL = """
    WITH finished AS (
        SELECT coalesce(sum(cost_usd), 0) AS cost_usd, count(*) AS runs
        FROM cost_ledger WHERE day = $1
    ), in_flight AS (
        SELECT coalesce(sum((c.payload->>'cost_usd')::numeric), 0) AS cost_usd,
               count(DISTINCT r.id) AS runs
        FROM runs r JOIN run_checkpoints c ON c.run_id = r.id
        WHERE r.status IN ('queued', 'running')
          AND c.kind = 'model_turn' AND (c.created_at AT TIME ZONE 'UTC')::date = $1
          AND jsonb_typeof(c.payload->'cost_usd') = 'number'
    )
    SELECT f.cost_usd + i.cost_usd AS cost_usd, f.runs, i.runs AS runs_in_flight
    FROM finished f, in_flight i
"""


async def daily_total(*, db: Database, day: date) -> DailyTotalOut:
    """Every user's spend on `day`, counted as `daily_spend` counts one user's."""
    async with db.connection() as conn:
        row = await conn.fetchrow(DAILY_TOTAL, day)
    assert row is not None  # an aggregate always answers one row
    return DailyTotalOut(
        day=day,
        cost_usd=rows.money(row["cost_usd"]) or 0.0,
        runs=row["runs"],
        runs_in_flight=row["runs_in_flight"],
    )
