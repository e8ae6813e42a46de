"""The events service's FastAPI apps: `create_app(settings)` (the streams) and
`create_management_app(app)` (its management port: probes and metrics).

The lifespan opens the runtime (fan-out hub, state client, authenticator);
relay_core's error handlers give every error DESIGN's JSON shape.

CORS only for the origins in `RELAY_CORS_ORIGINS` (the web console's, in dev):
GET with the `Authorization` and `Last-Event-ID` headers, no cookies (a key
travels in a header, never a credential the browser would attach by itself).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from relay_core import errors, tracing
from relay_core.management import management_app
from relay_events.config import EventsSettings
from relay_events.routes import management, router
from relay_events.runtime import open_runtime

log = logging.getLogger(__name__)

DESCRIPTION = """\
Resumable server-sent events of Relay runs.

`GET /v1/runs/{run_id}/events` with `Authorization: Bearer <api key>` streams a
run's events; reconnect with `Last-Event-ID` (or `?last_event_id=`) to get
every event after it exactly once. The stream closes after `done`.
"""


def create_app(settings: EventsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            log.info("events ready to serve", extra={"port": settings.port})
            try:
                yield
            finally:
                app.state.runtime = None

    app = FastAPI(
        title="Relay events",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=tracing.fastapi_telemetry(),
    )
    app.state.runtime = None
    errors.install(app)
    app.include_router(router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization", "Last-Event-ID"],
            allow_credentials=False,
            max_age=600,
        )
    return app


def create_management_app(app: FastAPI) -> FastAPI:
    """`/livez`, `/readyz`, `/metrics`, the detailed `/healthz`, on `app`'s runtime."""
    return management_app(management, title="Relay events (management)", shared=app)
