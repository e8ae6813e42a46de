"""FastAPI dependencies: the shared clients and the internal-token guard.

Routes stay one line of wiring: `db: DbDep, redis: RedisDep, settings: SettingsDep`
(`calls: CallsDep`: the process's coalesced Redis calls, `relay_core.rediscalls`).

Why every dependency is `async def`: FastAPI runs a plain `def` dependency in
its thread pool, one thread hop per dependency per request; these only read
`app.state`, so they run on the event loop.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from redis.asyncio import Redis

from relay_core.errors import ApiError
from relay_core.rediscalls import RedisCalls
from relay_core.state_api import INTERNAL_TOKEN_HEADER
from relay_state.config import StateSettings
from relay_state.db import Database


async def get_settings(request: Request) -> StateSettings:
    settings: StateSettings = request.app.state.settings
    return settings


def _starting() -> ApiError:
    # The management port answers from the process's start; the lifespan that
    # opens the clients may not have run yet.
    return ApiError(503, "state is starting", reason="starting")


async def get_db(request: Request) -> Database:
    db: Database | None = getattr(request.app.state, "db", None)
    if db is None:
        raise _starting()
    return db


async def get_redis(request: Request) -> Redis:
    redis: Redis | None = getattr(request.app.state, "redis", None)
    if redis is None:
        raise _starting()
    return redis


async def get_calls(request: Request) -> RedisCalls:
    calls: RedisCalls | None = getattr(request.app.state, "calls", None)
    if calls is None:
        raise _starting()
    return calls


SettingsDep = Annotated[StateSettings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
RedisDep = Annotated[Redis, Depends(get_redis)]
CallsDep = Annotated[RedisCalls, Depends(get_calls)]


async def require_internal_token(
    settings: SettingsDep,
    token: Annotated[str | None, Header(alias=INTERNAL_TOKEN_HEADER)] = None,
) -> None:
    """Every internal route: the shared token, compared in constant time."""
    expected = settings.internal_token.get_secret_value().encode()
    if token is None or not hmac.compare_digest(token.encode(), expected):
        raise ApiError(401, f"missing or wrong {INTERNAL_TOKEN_HEADER} header")
