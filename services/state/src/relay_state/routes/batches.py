"""`/internal/v1/batch/...`: creations, claims, checkpoints and finishes in batches
(`relay_state.batches`; each item is its single call under `/internal/v1/runs`)."""

from __future__ import annotations

from fastapi import APIRouter

from relay_core.state_api import (
    BatchOut,
    CheckpointItem,
    CheckpointOut,
    CheckpointsIn,
    ClaimItem,
    ClaimOut,
    ClaimsIn,
    CreateRunItem,
    CreateRunsIn,
    FinishesIn,
    FinishItem,
    RunOut,
)
from relay_state import attempts, batches, checkpoints, runs
from relay_state.deps import CallsDep, DbDep, RedisDep, SettingsDep

router = APIRouter(prefix="/batch", tags=["batches"])
PREFIX = "/internal/v1/runs"


@router.post("/runs")
async def create_runs(body: CreateRunsIn, db: DbDep, redis: RedisDep, calls: CallsDep) -> BatchOut:
    async def one(item: CreateRunItem) -> tuple[int, RunOut]:
        run, created = await runs.create_run(db=db, redis=redis, req=item.body, calls=calls)
        return (201 if created else 200), run

    return await batches.carry_out(body.items, one, route=PREFIX)


@router.post("/claims")
async def claim_runs(
    body: ClaimsIn, db: DbDep, redis: RedisDep, calls: CallsDep, settings: SettingsDep
) -> BatchOut:
    async def one(item: ClaimItem) -> tuple[int, ClaimOut]:
        claim = await attempts.claim_run(
            db=db,
            redis=redis,
            run_id=item.run_id,
            consumer=item.body.consumer,
            lease_ttl_s=item.body.lease_ttl_s or settings.lease_ttl_s,
            calls=calls,
        )
        return 200, claim

    return await batches.carry_out(body.items, one, route=PREFIX + "/{run_id}/claim")


@router.post("/checkpoints")
async def write_checkpoints(body: CheckpointsIn, db: DbDep) -> BatchOut:
    async def one(item: CheckpointItem) -> tuple[int, CheckpointOut]:
        stored, created = await checkpoints.write_checkpoint(
            db=db, run_id=item.run_id, cp=item.body
        )
        return (201 if created else 200), stored

    route = PREFIX + "/{run_id}/checkpoints"
    return await batches.carry_out(body.items, one, route=route, traced=False)


@router.post("/finishes")
async def finish_runs(body: FinishesIn, db: DbDep, redis: RedisDep, calls: CallsDep) -> BatchOut:
    async def one(item: FinishItem) -> tuple[int, RunOut]:
        run = await attempts.finish_run(
            db=db, redis=redis, run_id=item.run_id, fin=item.body, calls=calls
        )
        return 200, run

    return await batches.carry_out(body.items, one, route=PREFIX + "/{run_id}/finish")
