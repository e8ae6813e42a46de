"""`/internal/v1/runs`: create, find a replay, read, list, statuses, cancel, claim,
checkpoint, finish."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from relay_core.events import RunStatus
from relay_core.state_api import (
    CancelIn,
    CheckpointIn,
    CheckpointOut,
    ClaimIn,
    ClaimOut,
    CreateRunIn,
    FinishIn,
    RunOut,
    RunPage,
    RunStatusesIn,
    RunStatusesOut,
)
from relay_state import attempts, checkpoints, runs
from relay_state.deps import CallsDep, DbDep, RedisDep, SettingsDep

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post("", status_code=201)
async def create_run(
    body: CreateRunIn, response: Response, db: DbDep, redis: RedisDep, calls: CallsDep
) -> RunOut:
    run, created = await runs.create_run(db=db, redis=redis, req=body, calls=calls)
    response.status_code = 201 if created else 200
    return run


@router.post("/replay")
async def find_replay(body: CreateRunIn, db: DbDep) -> RunOut:
    """The run a retry of `body` under its idempotency key is answered with
    (404: none; 409: the key belongs to a different request). Creates nothing."""
    return await runs.find_replay(db=db, req=body)


@router.post("/statuses")
async def run_statuses(body: RunStatusesIn, db: DbDep) -> RunStatusesOut:
    return await runs.run_statuses(db=db, run_ids=body.run_ids)


@router.get("")
async def list_runs(
    db: DbDep,
    user_id: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[list[RunStatus] | None, Query()] = None,
) -> RunPage:
    return await runs.list_runs(db=db, user_id=user_id, limit=limit, cursor=cursor, statuses=status)


@router.get("/{run_id}")
async def get_run(run_id: str, db: DbDep, user_id: str | None = None) -> RunOut:
    return await runs.get_run(db=db, run_id=run_id, user_id=user_id)


@router.post("/{run_id}/cancel")
async def cancel_run(
    run_id: str, body: CancelIn, db: DbDep, redis: RedisDep, settings: SettingsDep
) -> RunOut:
    return await runs.cancel_run(
        db=db,
        redis=redis,
        run_id=run_id,
        user_id=body.user_id,
        retention_s=settings.events_retention_s,
    )


@router.post("/{run_id}/claim")
async def claim_run(
    run_id: str, body: ClaimIn, db: DbDep, redis: RedisDep, calls: CallsDep, settings: SettingsDep
) -> ClaimOut:
    return await attempts.claim_run(
        db=db,
        redis=redis,
        run_id=run_id,
        consumer=body.consumer,
        lease_ttl_s=body.lease_ttl_s or settings.lease_ttl_s,
        calls=calls,
    )


@router.post("/{run_id}/checkpoints", status_code=201)
async def write_checkpoint(
    run_id: str, body: CheckpointIn, response: Response, db: DbDep
) -> CheckpointOut:
    stored, created = await checkpoints.write_checkpoint(db=db, run_id=run_id, cp=body)
    response.status_code = 201 if created else 200
    return stored


@router.post("/{run_id}/finish")
async def finish_run(
    run_id: str, body: FinishIn, db: DbDep, redis: RedisDep, calls: CallsDep
) -> RunOut:
    return await attempts.finish_run(db=db, redis=redis, run_id=run_id, fin=body, calls=calls)
