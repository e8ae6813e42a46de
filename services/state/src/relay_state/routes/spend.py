"""`/internal/v1/spend`: what the cost ledger records a user (or everyone) spent."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from relay_core.state_api import DailySpendOut, DailyTotalOut
from relay_state import spend
from relay_state.deps import DbDep

router = APIRouter(prefix="/spend", tags=["spend"])


@router.get("/daily")
async def daily_spend(
    db: DbDep,
    user_id: Annotated[str, Query(min_length=1, max_length=200)],
    day: date,
) -> DailySpendOut:
    return await spend.daily_spend(db=db, user_id=user_id, day=day)


@router.get("/daily/total")
async def daily_total(db: DbDep, day: date) -> DailyTotalOut:
    return await spend.daily_total(db=db, day=day)
