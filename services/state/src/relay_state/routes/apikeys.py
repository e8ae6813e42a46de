"""`/internal/v1/keys`: API keys."""

from __future__ import annotations

from fastapi import APIRouter, Response

from relay_core.state_api import (
    CreatedKey,
    CreateKeyIn,
    KeyOut,
    Principal,
    UpdateKeyIn,
    VerifyKeyIn,
)
from relay_state import apikeys
from relay_state.deps import DbDep, RedisDep

router = APIRouter(prefix="/keys", tags=["keys"])


@router.post("/verify")
async def verify_key(body: VerifyKeyIn, db: DbDep) -> Principal:
    return await apikeys.verify_key(db=db, key=body.key)


@router.post("", status_code=201)
async def create_key(body: CreateKeyIn, db: DbDep) -> CreatedKey:
    return await apikeys.create_key(db=db, req=body)


@router.get("")
async def list_keys(db: DbDep, user_id: str | None = None) -> dict[str, list[dict[str, object]]]:
    found = await apikeys.list_keys(db=db, user_id=user_id)
    return {"keys": [k.model_dump(mode="json") for k in found]}


@router.patch("/{key_id}")
async def update_key(key_id: str, body: UpdateKeyIn, db: DbDep, redis: RedisDep) -> KeyOut:
    return await apikeys.update_key(db=db, redis=redis, key_id=key_id, req=body)


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, db: DbDep, redis: RedisDep) -> Response:
    await apikeys.revoke_key(db=db, redis=redis, key_id=key_id)
    return Response(status_code=204)
