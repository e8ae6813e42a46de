"""`/v1/admin/...`: kill switch, API keys and the overview; admin keys only (403 otherwise)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from relay_gateway import admin_service, overview
from relay_gateway.deps import AdminPrincipal, RuntimeDep
from relay_gateway.routes import AUTH, errors
from relay_gateway.schemas import (
    USER_ID_PATTERN,
    CreatedKeyView,
    CreateKeyIn,
    KeyList,
    KeyView,
    KillSwitchIn,
    KillSwitchOut,
    OverviewOut,
    UpdateKeyIn,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get(
    "/kill-switch",
    response_model=KillSwitchOut,
    summary="Whether new runs are refused",
    responses=errors(403, *AUTH),
)
async def get_kill_switch(_: AdminPrincipal, runtime: RuntimeDep) -> KillSwitchOut:
    return await admin_service.get_kill_switch(runtime=runtime)


@router.put(
    "/kill-switch",
    response_model=KillSwitchOut,
    summary="Turn the kill switch on or off",
    responses=errors(400, 403, 415, 422, *AUTH),
)
async def put_kill_switch(
    body: KillSwitchIn, admin: AdminPrincipal, runtime: RuntimeDep
) -> KillSwitchOut:
    """On: new runs get 503 reason `kill_switch` and runs in flight stop at their next step."""
    return await admin_service.set_kill_switch(runtime=runtime, admin=admin, enabled=body.enabled)


@router.post(
    "/keys",
    status_code=201,
    response_model=CreatedKeyView,
    summary="Create an API key (shown once)",
    responses=errors(400, 403, 409, 415, 422, *AUTH),
)
async def create_key(
    body: CreateKeyIn, admin: AdminPrincipal, runtime: RuntimeDep
) -> CreatedKeyView:
    return await admin_service.create_key(runtime=runtime, admin=admin, body=body)


@router.get(
    "/keys", response_model=KeyList, summary="List API keys", responses=errors(403, 422, *AUTH)
)
async def list_keys(
    _: AdminPrincipal,
    runtime: RuntimeDep,
    user_id: Annotated[
        str | None, Query(pattern=USER_ID_PATTERN, description="only this user's")
    ] = None,
) -> KeyList:
    return await admin_service.list_keys(runtime=runtime, user_id=user_id)


@router.patch(
    "/keys/{key_id}",
    response_model=KeyView,
    summary="Change an API key's limits (e.g. a larger interactive_share)",
    responses=errors(400, 403, 404, 415, 422, *AUTH),
)
async def update_key(
    key_id: str, body: UpdateKeyIn, admin: AdminPrincipal, runtime: RuntimeDep
) -> KeyView:
    """A limit sent is set (null: back to the default); one left out is kept.
    Effective within seconds on every replica."""
    return await admin_service.update_key(runtime=runtime, admin=admin, key_id=key_id, body=body)


@router.delete(
    "/keys/{key_id}",
    status_code=204,
    response_class=Response,
    summary="Revoke an API key (effective within seconds everywhere)",
    responses=errors(403, 404, *AUTH),
)
async def revoke_key(key_id: str, admin: AdminPrincipal, runtime: RuntimeDep) -> Response:
    await admin_service.revoke_key(runtime=runtime, admin=admin, key_id=key_id)
    return Response(status_code=204)


@router.get(
    "/overview",
    response_model=OverviewOut,
    summary="Runs in flight, capacity and queue lag per pool, breakers, spend today",
    responses=errors(403, *AUTH),
)
async def get_overview(_: AdminPrincipal, runtime: RuntimeDep) -> OverviewOut:
    """What `relay top` and the web console show; `spend_today` is null while state is down."""
    return await overview.overview(runtime=runtime)
