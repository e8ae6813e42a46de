"""API keys: create, verify, list, revoke, the bootstrap admin key, the internal token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from relay_core.state_api import INTERNAL_PREFIX, CreateKeyIn
from relay_core.state_client import NotFound, StateClient
from relay_state.apikeys import hash_key
from relay_state.db import Database

from .conftest import TOKEN, ServerThread, make_settings


async def test_create_verify_list_revoke(client: StateClient, db: Database) -> None:
    created = await client.create_key(
        CreateKeyIn(user_id="alice", name="laptop", daily_limit_usd=2.5, max_concurrent_runs=3)
    )
    assert created.api_key.startswith("rk_")
    assert created.prefix == created.api_key[: len(created.prefix)]

    principal = await client.verify_key(created.api_key)
    assert principal.key_id == created.key_id
    assert (principal.user_id, principal.role) == ("alice", "user")
    assert principal.daily_limit_usd == 2.5
    assert principal.max_concurrent_runs == 3
    assert principal.run_limit_usd is None

    async with db.connection() as conn:
        stored = await conn.fetchval("SELECT key_hash FROM api_keys WHERE id = $1", created.key_id)
    assert stored != created.api_key
    assert stored == hash_key(created.api_key)
    assert created.api_key not in stored

    await client.create_key(CreateKeyIn(user_id="bob"))
    listed = await client.list_keys("alice")
    assert [k.key_id for k in listed] == [created.key_id]
    assert len(await client.list_keys()) == 2

    await client.revoke_key(created.key_id)
    with pytest.raises(NotFound):
        await client.verify_key(created.api_key)
    [revoked] = await client.list_keys("alice")
    assert revoked.revoked_at is not None
    await client.revoke_key(created.key_id)  # revoking twice is fine


async def test_unknown_and_malformed_keys_are_404(client: StateClient) -> None:
    with pytest.raises(NotFound):
        await client.verify_key("rk_not-a-key")
    with pytest.raises(NotFound):
        await client.revoke_key("key_0000")
    with pytest.raises(NotFound):
        await client.revoke_key("bad%00id")


async def test_internal_token_is_required(state: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=state.base_url, timeout=5) as http:
        missing = await http.post(f"{INTERNAL_PREFIX}/keys/verify", json={"key": "x"})
        wrong = await http.get(
            f"{INTERNAL_PREFIX}/keys", headers={"X-Relay-Internal-Token": TOKEN + "x"}
        )
        health = await http.get("/healthz")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "unauthorized"
    assert wrong.status_code == 401
    assert health.status_code == 200


async def _verify_eventually(client: StateClient, key: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            await client.verify_key(key)
            return
        except NotFound:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_bootstrap_admin_key_is_stored_hashed_and_rotated(
    database_url: str,
    redis_url: str,
    start_state: Callable[..., ServerThread],
    db: Database,
) -> None:
    first = start_state(make_settings(database_url, redis_url, admin_api_key="first-admin-key"))
    client = StateClient(first.base_url, TOKEN)
    try:
        await _verify_eventually(client, "first-admin-key")
        principal = await client.verify_key("first-admin-key")
        assert (principal.user_id, principal.role) == ("admin", "admin")
        first.stop()

        second = start_state(
            make_settings(database_url, redis_url, admin_api_key="second-admin-key")
        )
        client2 = StateClient(second.base_url, TOKEN)
        await _verify_eventually(client2, "second-admin-key")
        with pytest.raises(NotFound):
            await client2.verify_key("first-admin-key")
        await client2.aclose()
    finally:
        await client.aclose()
    async with db.connection() as conn:
        hashes = await conn.fetch("SELECT key_hash FROM api_keys")
    assert {r["key_hash"] for r in hashes} == {
        hash_key("first-admin-key"),
        hash_key("second-admin-key"),
    }
