"""`/v1/runs`: submit a background run, read, list and cancel the caller's runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from relay_gateway import service
from relay_gateway.deps import CurrentPrincipal, RuntimeDep
from relay_gateway.routes import AUTH, errors
from relay_gateway.schemas import (
    CURSOR_PATTERN,
    MAX_IDEMPOTENCY_KEY,
    RunAccepted,
    RunList,
    RunStatus,
    RunView,
    SubmitRunIn,
)

router = APIRouter(prefix="/v1/runs", tags=["runs"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        description="retrying with the same key returns the same run instead of a new one",
    ),
]


@router.post(
    "",
    status_code=202,
    response_model=RunAccepted,
    summary="Submit a background run",
    responses=errors(400, 404, 409, 413, 415, 422, *AUTH),
)
async def submit_run(
    body: SubmitRunIn,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RunAccepted:
    """Queue a run; stream its events from `events_url`. A replay of an
    `Idempotency-Key` answers the same run with `Idempotent-Replayed: true`."""
    submitted = await service.submit_run(
        runtime=runtime, principal=principal, body=body, idempotency_key=idempotency_key
    )
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return submitted.run


@router.get(
    "",
    response_model=RunList,
    summary="List your runs, newest first",
    responses=errors(400, 422, *AUTH),
)
async def list_runs(
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=100, description="page size")] = 20,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            description=(
                "`next_cursor` of the previous page, as it was given: an opaque token of "
                "URL-safe base64 characters (`A-Z a-z 0-9 - _`, no padding, at most 32); "
                "a token that is not one the API gave answers 400"
            ),
        ),
    ] = None,
    status: Annotated[
        list[RunStatus] | None,
        Query(description="only runs in this status; repeat for several (`?status=a&status=b`)"),
    ] = None,
) -> RunList:
    return await service.list_runs(
        runtime=runtime, principal=principal, limit=limit, cursor=cursor, statuses=status
    )


@router.get("/{run_id}", response_model=RunView, summary="Get a run", responses=errors(404, *AUTH))
async def get_run(run_id: str, principal: CurrentPrincipal, runtime: RuntimeDep) -> RunView:
    return await service.get_run(runtime=runtime, principal=principal, run_id=run_id)


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    response_model=RunView,
    summary="Cancel a run (the stop button)",
    responses=errors(404, 409, *AUTH),
)
async def cancel_run(run_id: str, principal: CurrentPrincipal, runtime: RuntimeDep) -> RunView:
    """Record the cancellation; the runner stops the run at its next step."""
    return await service.cancel_run(runtime=runtime, principal=principal, run_id=run_id)
