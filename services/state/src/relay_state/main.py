"""`relay-state`: serve the internal API, or run an operations command.

    relay-state                                  serve (RELAY_* settings)
    relay-state migrate [--database-url URL]     apply migrations, exit
    relay-state create-key --user-id U [--role admin] [--name N]
                                                 print a new key as JSON

The commands talk to Postgres directly and read only the database settings,
so a migration Job needs no internal token. Their output (the key) goes to
stdout as one JSON document; logs are JSON lines too, on stderr for commands.
Serving and the commands alike start through relay_core.entrypoint: a bad
setting is one log line and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import asyncpg
from pydantic import SecretStr

from relay_core import entrypoint
from relay_core.httpserver import limits_from, serve
from relay_core.state_api import CreatedKey, CreateKeyIn
from relay_state import apikeys
from relay_state.app import create_app, create_management_app
from relay_state.config import DatabaseSettings, StateSettings
from relay_state.db import UNAVAILABLE, Database, describe
from relay_state.migrate import migrate

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay-state", description="Relay state service")
    sub = parser.add_subparsers(dest="command")
    mig = sub.add_parser("migrate", help="apply the SQL migrations and exit")
    mig.add_argument("--database-url", help="overrides RELAY_DATABASE_URL")
    key = sub.add_parser("create-key", help="create an API key and print it as JSON")
    key.add_argument("--user-id", required=True)
    key.add_argument("--role", choices=["user", "admin"], default="user")
    key.add_argument("--name", default="")
    key.add_argument("--database-url", help="overrides RELAY_DATABASE_URL")
    return parser


def _database_settings(url: str | None) -> DatabaseSettings:
    settings = entrypoint.load_settings("state", DatabaseSettings, stream=sys.stderr)
    if url:
        settings = settings.model_copy(update={"database_url": SecretStr(url)})
    return settings


async def _create_key(settings: DatabaseSettings, req: CreateKeyIn) -> CreatedKey:
    db = Database(settings.database_url.get_secret_value(), timeout_s=5.0, max_size=1)
    try:
        return await apikeys.create_key(db=db, req=req)
    finally:
        await db.close()


def _run_command(args: argparse.Namespace) -> int:
    settings = _database_settings(args.database_url)
    dsn = settings.database_url.get_secret_value()
    try:
        if args.command == "migrate":
            applied = asyncio.run(migrate(dsn))
            log.info("migrations done", extra={"applied": applied})
            return 0
        req = CreateKeyIn(user_id=args.user_id, role=args.role, name=args.name)
        created = asyncio.run(_create_key(settings, req))
    except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
        log.error("%s failed: database unreachable or refused: %s", args.command, describe(exc))
        return 1
    except Exception as exc:  # e.g. the 503 ApiError of an unreachable database
        log.error("%s failed: %s", args.command, describe(exc))
        return 1
    sys.stdout.write(created.model_dump_json() + "\n")
    return 0


def _serve(settings: StateSettings) -> None:
    app = create_app(settings)
    serve(
        app,
        host=settings.host,
        port=settings.port,
        limits=limits_from(settings),
        management=create_management_app(app),
        management_port=settings.management_port,
    )


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command is not None:
        sys.exit(_run_command(args))
    entrypoint.run("state", StateSettings, _serve)


if __name__ == "__main__":
    main()
