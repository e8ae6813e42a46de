"""Apply the numbered SQL migrations shipped inside the package.

Decisions:

- Migrations are plain SQL files `NNNN_name.sql` in `relay_state/migrations`,
  read with importlib.resources so they ship in the wheel and the image.
- Each file runs in its own transaction together with its row in
  `schema_migrations`: a failure leaves no half-applied file behind, and a
  re-run applies only what is missing.
- Two `migrate` processes may race (a Helm hook retried while the first one
  still runs, two developers' `make dev`): a session-level advisory lock
  serialises them, so the second waits and then finds nothing to do.
- The file's sha256 is recorded; a file edited after it was applied is
  logged, never silently re-applied (write a new migration instead).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Arbitrary 64-bit constant naming the migration lock ("relay migrate").
MIGRATE_LOCK_ID = 0x72656C61795F6D67
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """Every migration in the package, in version order."""
    folder = resources.files("relay_state") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(match.group(1), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {versions}")
    return found


async def migrate(dsn: str, *, connect_timeout_s: float = 5.0) -> list[str]:
    """Apply what is missing; return the names applied now."""
    conn = await asyncpg.connect(dsn, timeout=connect_timeout_s)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK_ID)
        try:
            return await _apply_missing(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK_ID)
    finally:
        await conn.close()


async def _apply_missing(conn: asyncpg.Connection) -> list[str]:
    await conn.execute(_CREATE_TABLE)
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    applied = {r["version"]: r["checksum"] for r in rows}
    done = []
    for migration in load_migrations():
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                log.warning("migration %s changed after it was applied", migration.name)
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        log.info("applied migration %s", migration.name)
        done.append(migration.name)
    return done
