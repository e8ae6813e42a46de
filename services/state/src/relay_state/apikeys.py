"""API keys: create (shown once), verify, list, revoke, and the bootstrap admin key.

Only the sha256 hex of a key is stored (see the migration for why a fast hash
is right for 256-bit random keys); the visible `prefix` lets a person tell
keys apart in a listing without the key itself.

The bootstrap admin key (`RELAY_ADMIN_API_KEY`) is upserted by hash at
start-up under the name `bootstrap`; when the setting changes, the previous
bootstrap key is revoked, so rotating the secret really retires the old one.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

from redis.asyncio import Redis

from relay_core import keys as redis_keys
from relay_core.state_api import CreatedKey, CreateKeyIn, KeyLimits, KeyOut, Principal, UpdateKeyIn
from relay_state import ids, rows
from relay_state.besteffort import best_effort
from relay_state.db import Database

log = logging.getLogger(__name__)

KEY_PREFIX = "rk_"
BOOTSTRAP_NAME = "bootstrap"
BOOTSTRAP_USER = "admin"
_LIST_LIMIT = 1000


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _visible_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 6]


async def verify_key(*, db: Database, key: str) -> Principal:
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            hash_key(key),
        )
    if row is None:
        raise ids.not_found("API key")
    return rows.principal(row)


async def create_key(*, db: Database, req: CreateKeyIn) -> CreatedKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with db.connection() as conn:
        row = await conn.fetchrow(
            """
            INSERT INTO api_keys (id, user_id, role, name, key_hash, prefix, run_limit_usd,
                                  daily_limit_usd, rate_limit_per_min, max_concurrent_runs,
                                  max_streams, interactive_share)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            RETURNING *
            """,
            ids.new_id("key"),
            req.user_id,
            req.role,
            req.name,
            hash_key(key),
            _visible_prefix(key),
            rows.numeric(req.run_limit_usd),
            rows.numeric(req.daily_limit_usd),
            req.rate_limit_per_min,
            req.max_concurrent_runs,
            req.max_streams,
            req.interactive_share,
        )
    log.info("api key created", extra={"key_id": row["id"], "user_id": req.user_id})
    return CreatedKey(**rows.key_out(row).model_dump(), api_key=key)


async def list_keys(*, db: Database, user_id: str | None) -> list[KeyOut]:
    async with db.connection() as conn:
        found = await conn.fetch(
            """
            SELECT * FROM api_keys
            WHERE $1::text IS NULL OR user_id = $1
            ORDER BY created_at, id LIMIT $2
            """,
            user_id,
            _LIST_LIMIT,
        )
    return [rows.key_out(r) for r in found]


# The limits a PATCH may set: KeyLimits' fields, each a column of api_keys.
_LIMIT_COLUMNS = tuple(KeyLimits.model_fields)
_MONEY = frozenset({"run_limit_usd", "daily_limit_usd"})


async def update_key(*, db: Database, redis: Redis, key_id: str, req: UpdateKeyIn) -> KeyOut:
    """Set the limits `req` names (a null: back to the default); the rest stay.
    Replicas drop their cached verification of the key, so the new limits
    apply within seconds everywhere (the revocation announcement)."""
    ids.require(key_id, "API key")
    changed = [name for name in _LIMIT_COLUMNS if name in req.model_fields_set]
    values = [
        rows.numeric(getattr(req, name)) if name in _MONEY else getattr(req, name)
        for name in changed
    ]
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(changed))
    sql = "SELECT * FROM api_keys WHERE id = $1"
    if changed:  # column names from _LIMIT_COLUMNS only, never from the request
        sql = f"UPDATE api_keys SET {assignments} WHERE id = $1 RETURNING *"  # noqa: S608
    async with db.connection() as conn:
        row = await conn.fetchrow(sql, key_id, *values)
    if row is None:
        raise ids.not_found("API key")
    log.info("api key limits changed", extra={"key_id": key_id, "limits": changed})
    await best_effort(
        redis.publish(redis_keys.revoked_keys(), key_id), what="announcing a changed key"
    )
    return rows.key_out(row)


async def revoke_key(*, db: Database, redis: Redis, key_id: str) -> None:
    ids.require(key_id, "API key")
    async with db.connection() as conn:
        found = await conn.fetchval(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 "
            "RETURNING id",
            key_id,
        )
    if found is None:
        raise ids.not_found("API key")
    log.info("api key revoked", extra={"key_id": key_id})
    # Lets replicas drop their auth caches early; their TTL bounds it anyway.
    await best_effort(
        redis.publish(redis_keys.revoked_keys(), key_id), what="announcing a revoked key"
    )


async def ensure_bootstrap_key(*, db: Database, key: str) -> None:
    """Store the bootstrap admin key (by hash) and revoke an older bootstrap key."""
    digest = hash_key(key)
    async with db.transaction() as conn:
        await conn.execute(
            """
            INSERT INTO api_keys (id, user_id, role, name, key_hash, prefix)
            VALUES ($1, $2, 'admin', $3, $4, $5)
            ON CONFLICT (key_hash) DO NOTHING
            """,
            ids.new_id("key"),
            BOOTSTRAP_USER,
            BOOTSTRAP_NAME,
            digest,
            _visible_prefix(key),
        )
        await conn.execute(
            """
            UPDATE api_keys SET revoked_at = now()
            WHERE name = $1 AND user_id = $2 AND key_hash <> $3 AND revoked_at IS NULL
            """,
            BOOTSTRAP_NAME,
            BOOTSTRAP_USER,
            digest,
        )
    log.info("bootstrap admin key in place")
