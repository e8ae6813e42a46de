"""Admin operations: the kill switch and API keys.

Keys live in state (hashed); the gateway only relays. A key's limits can be
changed after the fact (`update_key`): that is how an operator gives a
tenant more (docs/design.md, "Noisy neighbours"). A revoked key stops
working on this replica at once (dropped from its auth cache) and on every
other replica (gateway or events) as soon as its `RevocationListener` hears
state's announcement on Redis; `auth_cache_ttl_s`, the lifetime of a cached
verification, is the bound when that announcement is lost.
"""

from __future__ import annotations

import logging

from relay_core import state_api
from relay_core.state_api import Principal
from relay_gateway import killswitch
from relay_gateway.runtime import Runtime
from relay_gateway.schemas import (
    CreatedKeyView,
    CreateKeyIn,
    KeyList,
    KeyView,
    KillSwitchOut,
    UpdateKeyIn,
)
from relay_gateway.service import check_id
from relay_gateway.upstream import from_state

log = logging.getLogger(__name__)


async def get_kill_switch(*, runtime: Runtime) -> KillSwitchOut:
    enabled = await killswitch.read(runtime.redis)
    runtime.kill_switch.observe(enabled)
    return KillSwitchOut(enabled=enabled)


async def set_kill_switch(*, runtime: Runtime, admin: Principal, enabled: bool) -> KillSwitchOut:
    await killswitch.write(runtime.redis, enabled=enabled)
    runtime.kill_switch.observe(enabled)
    log.warning("kill switch turned %s", "on" if enabled else "off", extra={"by_key": admin.key_id})
    return KillSwitchOut(enabled=enabled)


async def create_key(*, runtime: Runtime, admin: Principal, body: CreateKeyIn) -> CreatedKeyView:
    with from_state("create key"):
        created = await runtime.state.create_key(state_api.CreateKeyIn(**body.model_dump()))
    log.info(
        "api key created",
        extra={"key_id": created.key_id, "for_user": created.user_id, "by_key": admin.key_id},
    )
    return CreatedKeyView.model_validate(created.model_dump())


async def list_keys(*, runtime: Runtime, user_id: str | None) -> KeyList:
    with from_state("list keys"):
        keys = await runtime.state.list_keys(user_id)
    return KeyList(keys=[KeyView.model_validate(k.model_dump()) for k in keys])


async def update_key(
    *, runtime: Runtime, admin: Principal, key_id: str, body: UpdateKeyIn
) -> KeyView:
    """Change a key's limits (to give a tenant more: a larger `interactive_share`,
    `max_streams`...); every replica drops its cached verification of the key."""
    check_id(key_id, "key")
    req = state_api.UpdateKeyIn(**body.model_dump(exclude_unset=True))
    with from_state("update key", not_found="key not found"):
        updated = await runtime.state.update_key(key_id, req)
    runtime.auth.forget_key_id(key_id)
    log.warning(
        "api key limits changed",
        extra={"key_id": key_id, "limits": sorted(body.model_fields_set), "by_key": admin.key_id},
    )
    return KeyView.model_validate(updated.model_dump())


async def revoke_key(*, runtime: Runtime, admin: Principal, key_id: str) -> None:
    check_id(key_id, "key")
    with from_state("revoke key", not_found="key not found"):
        await runtime.state.revoke_key(key_id)
    runtime.auth.forget_key_id(key_id)
    log.warning("api key revoked", extra={"key_id": key_id, "by_key": admin.key_id})
