"""The state service's FastAPI app: clients in the lifespan, routers by concern.

The lifespan creates the asyncpg pool (which connects lazily) and the Redis
client (likewise), so the app starts and answers /healthz with both down,
and starts two background tasks: storing the bootstrap admin key (retried
until the database is there and migrated) and the reconciler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, FastAPI

from relay_core import errors, tracing
from relay_core.management import management_app, register_connection_metrics
from relay_core.redis import create_redis
from relay_core.rediscalls import RedisCalls
from relay_core.state_api import INTERNAL_PREFIX
from relay_state import apikeys, queue_metrics
from relay_state.config import StateSettings
from relay_state.db import Database, describe
from relay_state.deps import require_internal_token
from relay_state.metrics import MetricsMiddleware
from relay_state.reconcile import Reconciler
from relay_state.routes import apikeys as apikeys_routes
from relay_state.routes import batches, conversations, documents, health, runs, spend

log = logging.getLogger(__name__)

BOOTSTRAP_RETRY_S = 2.0


async def _store_bootstrap_key(db: Database, key: str) -> None:
    while True:
        try:
            await apikeys.ensure_bootstrap_key(db=db, key=key)
            return
        except Exception as exc:  # retried until Postgres is up and migrated
            log.warning("bootstrap admin key not stored yet: %s", describe(exc))
        await asyncio.sleep(BOOTSTRAP_RETRY_S)


def _background_tasks(app: FastAPI, settings: StateSettings) -> list[asyncio.Task[None]]:
    reconciler = Reconciler(
        db=app.state.db,
        redis=app.state.redis,
        interval_s=settings.reconcile_interval_s,
        batch=settings.reconcile_batch,
        min_age_s=settings.reconcile_min_age_s,
    )
    tasks = [
        asyncio.create_task(reconciler.run_forever(), name="reconciler"),
        asyncio.create_task(
            queue_metrics.run_forever(
                app.state.redis, interval_s=settings.queue_metrics_interval_s
            ),
            name="queue-metrics",
        ),
    ]
    if settings.admin_api_key is not None:
        key = settings.admin_api_key.get_secret_value()
        tasks.append(asyncio.create_task(_store_bootstrap_key(app.state.db, key)))
    return tasks


def _internal_router() -> APIRouter:
    router = APIRouter(prefix=INTERNAL_PREFIX, dependencies=[Depends(require_internal_token)])
    for sub in (
        apikeys_routes.router,
        runs.router,
        batches.router,
        conversations.router,
        documents.router,
        spend.router,
    ):
        router.include_router(sub)
    router.include_router(health.internal)
    return router


def create_app(settings: StateSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(
            settings.database_url.get_secret_value(),
            timeout_s=settings.dependency_timeout_s,
            max_size=settings.db_pool_max,
        )
        app.state.redis = create_redis(
            settings.redis_url, timeout_s=settings.dependency_timeout_s, mode=settings.redis_mode
        )
        # the queue entries of the runs created at the same moment, one pipeline
        app.state.calls = RedisCalls(app.state.redis, closed="state's Redis calls were closed")
        tasks = _background_tasks(app, settings)
        log.info("state started", extra={"port": settings.port})
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await app.state.db.close()
            await app.state.calls.aclose()
            await app.state.redis.aclose()
            log.info("state stopped")

    app = FastAPI(
        title="relay-state",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=tracing.fastapi_telemetry(),
    )
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(MetricsMiddleware)
    app.include_router(health.probes)
    app.include_router(_internal_router())
    return app


def create_management_app(app: FastAPI) -> FastAPI:
    """`/livez`, `/readyz`, `/metrics`, `/healthz`, on `app`'s clients."""
    register_connection_metrics()
    return management_app(health.management, title="relay-state (management)", shared=app)
