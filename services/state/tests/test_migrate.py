"""Migrations: applied once, recorded, idempotent, safe when two run at once."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from relay_state.migrate import load_migrations, migrate


async def test_migrations_apply_once_and_rerun_is_a_no_op(fresh_database_url: str) -> None:
    names = [m.name for m in load_migrations()]
    assert names[0] == "0001_init.sql"
    assert await migrate(fresh_database_url) == names
    assert await migrate(fresh_database_url) == []
    conn = await asyncpg.connect(fresh_database_url)
    try:
        recorded = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY 1")
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert [r["name"] for r in recorded] == names
    assert {
        "api_keys",
        "conversations",
        "runs",
        "messages",
        "run_checkpoints",
        "cost_ledger",
        "documents",
    } <= tables


async def test_two_racing_migrations_apply_each_file_once(fresh_database_url: str) -> None:
    results = await asyncio.gather(*(migrate(fresh_database_url) for _ in range(3)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(m.name for m in load_migrations())


async def test_run_status_is_checked_by_the_database(fresh_database_url: str) -> None:
    await migrate(fresh_database_url)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute("INSERT INTO conversations (id, user_id) VALUES ('c', 'u')")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO runs (id, user_id, conversation_id, kind, status, model, input) "
                "VALUES ('r', 'u', 'c', 'background', 'exploded', 'm', '{}')"
            )
    finally:
        await conn.close()
