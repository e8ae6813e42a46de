"""Regression: a connection in a broken protocol state failed a run with a 500.

When Postgres shut down under load, asyncpg left a pooled connection in a
broken protocol state and the next transaction on it raised
`InternalClientError` ("cannot switch to state 15; another operation (2) is
in progress"). It was not translated, so state answered 500 to a runner's
checkpoint and the runner failed the run (chaos suite, Postgres outage). It
is now a 503 like any other "database not there right now", and that
connection is terminated instead of going back to the pool.
"""

from __future__ import annotations

import asyncpg
import pytest

from relay_core.errors import ApiError
from relay_state.db import Database


async def test_a_broken_connection_is_a_503_and_is_not_reused(database_url: str) -> None:
    db = Database(database_url, max_size=1)
    try:
        with pytest.raises(ApiError) as err:
            async with db.connection() as conn:
                broken_pid = await conn.fetchval("SELECT pg_backend_pid()")
                raise asyncpg.exceptions.InternalClientError(
                    "cannot switch to state 15; another operation (2) is in progress"
                )
        assert err.value.status == 503
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != broken_pid
    finally:
        await db.close()
