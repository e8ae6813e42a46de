"""The asyncpg pool and the translation of database failures into API errors.

Decisions:

- The pool has `min_size=0`, so creating it never connects: the service starts
  and answers /healthz while Postgres is down, and every later acquire simply
  tries to connect again, which is how it recovers when Postgres comes back.
- Every acquire and every command is bounded by `timeout_s` (the settings'
  `dependency_timeout_s`, ~2 s): a dead or hung database is a fast 503, never a
  request that hangs.
- Failures are translated once, here, for every query. Connection-level
  errors (a connection asyncpg reports in a broken protocol state included:
  it is terminated, not put back in the pool), and a transaction Postgres
  aborted to break a deadlock or a serialization conflict, become 503
  `unavailable` with the reason (callers retry as for any outage). Bad data
  that Postgres rejects (class 22, e.g. a NUL character) becomes 400; values
  too large for a column or a tsvector (class 54) become 413. Anything else
  is a bug and reaches the generic 500 handler (logged, no trace in the body).
- JSONB columns are decoded to and encoded from Python values by a codec set
  on each new connection, so service code passes dicts and lists.
- A connection goes back to the pool without asyncpg's default reset query
  (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`), which is
  one more round trip on every request. Nothing here leaves session state
  behind: advisory locks are transaction-scoped, there are no LISTENs, no
  cursors outside a transaction, no `SET` without `LOCAL`. asyncpg still rolls
  back a transaction left open before the connection is reused.
- Prepared statements are cached per connection by asyncpg (its statement
  cache), so a query a connection has run before is parsed and planned once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from relay_core.errors import ApiError

log = logging.getLogger(__name__)

# Errors that mean "the database is not there right now", not "this request is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    # The connection's protocol state is broken ("cannot switch to state 15;
    # another operation is in progress"), seen when Postgres shuts down under
    # load: that connection is dropped (see `connection`), a retry gets another.
    asyncpg.exceptions.InternalClientError,
)


def describe(exc: BaseException) -> str:
    """A short, secret-free reason for logs and 503 bodies."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset hook: nothing to reset (see the module docstring)."""


class Database:
    """A lazily created pool; `connection()` and `transaction()` translate failures."""

    def __init__(self, dsn: str, *, timeout_s: float = 2.0, max_size: int = 20) -> None:
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=self._max_size,
                        timeout=self._timeout_s,  # connect timeout
                        command_timeout=self._timeout_s,
                        max_inactive_connection_lifetime=60.0,
                        init=_init_connection,
                        reset=_keep_session,
                    )
        return self._pool

    def pool_stats(self) -> tuple[int, int]:
        """(connections open, connections idle) for the metrics."""
        if self._pool is None:
            return 0, 0
        return self._pool.get_size(), self._pool.get_idle_size()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            pool = await self._get_pool()
            # Bounded here rather than by `acquire(timeout=)`, which wraps every
            # acquire in `wait_for` (a task of its own per call on Python 3.11).
            async with asyncio.timeout(self._timeout_s):
                conn = await pool.acquire()
            try:
                yield conn
            except asyncpg.exceptions.InternalClientError:
                conn.terminate()  # never hand a broken connection out again
                raise
            finally:
                await pool.release(conn)
        except UNAVAILABLE as exc:
            log.warning("postgres unavailable: %s", describe(exc))
            raise ApiError(503, f"postgres unavailable: {describe(exc)}") from exc
        except asyncpg.exceptions.TransactionRollbackError as exc:  # deadlock, serialization
            raise ApiError(
                503, f"postgres aborted a conflicting write, retry: {exc}"[:300]
            ) from exc
        except asyncpg.exceptions.DataError as exc:
            raise ApiError(400, f"invalid data: {exc}"[:300]) from exc
        except asyncpg.exceptions.ProgramLimitExceededError as exc:
            raise ApiError(413, f"too large: {exc}"[:300]) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def ping(self) -> None:
        """Raises ApiError(503) when Postgres cannot answer."""
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        try:
            await asyncio.wait_for(pool.close(), timeout=self._timeout_s)
        except UNAVAILABLE:  # TimeoutError is one of them
            pool.terminate()
