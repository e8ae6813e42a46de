"""The gateway's FastAPI apps: `create_app(settings)` (the public API) and
`create_management_app(app)` (its management port: probes and metrics).

Middleware order, outermost first: metrics (sees every request, its route
template once routing has run, and the end of a streamed body), then the body
limits (413/415 before anything parses a body), then FastAPI's own stack with
relay_core's error handlers, which give every error DESIGN's JSON shape.

The model catalog is loaded here, not in the lifespan, so a broken
`RELAY_MODELS_FILE` stops the process at start-up with a clear message. The
OpenAPI document lists its model names (`model` is an enum there, which is
what the service accepts: `resolve_model` refuses any other name with 422),
so a client or a fuzzer reads the valid names from the schema.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from relay_core import entrypoint, errors, tracing
from relay_core.management import management_app
from relay_core.models import ModelCatalog
from relay_gateway.config import GatewaySettings
from relay_gateway.limits import BodyLimitMiddleware
from relay_gateway.metrics import GatewayMetrics, MetricsMiddleware
from relay_gateway.routes import admin, chat, conversations, health, runs
from relay_gateway.runtime import open_runtime
from relay_gateway.webconsole import mount as mount_console

log = logging.getLogger(__name__)

DESCRIPTION = """\
Relay's public API: submit agent runs, read them and their conversations.

Authenticate with `Authorization: Bearer <api key>`. Events of a run stream
from `events_url` (the events service). Every error is
`{"error": {"type", "message", "reason"?}}`. The web console is at `/console/`.
"""


def load_catalog(settings: GatewaySettings) -> ModelCatalog:
    """The model catalog; a file that cannot be read or parsed is a bad setting."""
    try:
        return ModelCatalog.load(settings.models_file)
    except (OSError, ValueError) as exc:
        raise entrypoint.ConfigError(
            "RELAY_MODELS_FILE", f"cannot load the model catalog {settings.models_file}: {exc}"
        ) from None


def create_app(settings: GatewaySettings) -> FastAPI:
    catalog = load_catalog(settings)
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, metrics, catalog) as runtime:
            app.state.runtime = runtime
            log.info("gateway ready to serve", extra={"port": settings.port})
            try:
                yield
            finally:
                app.state.runtime = None

    app = FastAPI(
        title="Relay",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=tracing.fastapi_telemetry(),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.runtime = None
    errors.install(app)
    for router in (runs.router, chat.router, conversations.router, admin.router, health.router):
        app.include_router(router)
    mount_console(app, events_public_url=settings.events_public_url)  # the web console
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _document_models(app, catalog.names())
    return app


def _document_models(app: FastAPI, names: list[str]) -> None:
    """`model` in the request bodies' schemas is an enum of the catalog's names."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.get("components", {}).get("schemas", {})
            for name in _request_bodies(schema):
                prop = components.get(name, {}).get("properties", {}).get("model")
                if prop is None or "title" not in prop or prop["title"] != "Model":
                    continue
                for branch in prop.get("anyOf", [prop]):
                    if branch.get("type") == "string":
                        branch.pop("pattern", None)
                        branch["enum"] = list(names)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _request_bodies(schema: dict[str, Any]) -> set[str]:
    """The component schemas that are request bodies (a response's `model`, the
    admin overview's breakers for one, names what is, not what may be sent)."""
    refs = set()
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                ref = media.get("schema", {}).get("$ref", "")
                if ref.startswith("#/components/schemas/"):
                    refs.add(ref.rsplit("/", 1)[1])
    return refs


def create_management_app(app: FastAPI) -> FastAPI:
    """`/livez`, `/readyz`, `/metrics`, the detailed `/healthz`, on `app`'s runtime."""
    return management_app(health.management, title="Relay gateway (management)", shared=app)
