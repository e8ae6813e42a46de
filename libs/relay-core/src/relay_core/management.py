"""The management port's app: `/livez` here, each service's probes and metrics beside it.

Every service serves `/livez`, `/readyz`, `/metrics` and a detailed
`/healthz` on its management port (`relay_core.httpserver`); its public port
keeps only a minimal `/healthz` (`{"status": "ok"}`), so the kill switch, the
pool's capacity and the metrics are not published to anyone who can reach
the API.

`management_app(shared=public_app)` shares the public app's `state` (the
runtime its lifespan opens), so a readiness check or a scrape reads the same
clients and counters as the API; it has no lifespan of its own. `/livez`
answers from memory, whatever the dependencies and the public port do: it is
what the liveness probe asks, and a flood of the public port must never fail
it.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY
from pydantic import BaseModel

from relay_core import errors, tracing
from relay_core.connguard import ConnectionCollector

__all__ = ["Alive", "alive", "management_app", "register_connection_metrics"]


class Alive(BaseModel):
    status: Literal["ok"] = "ok"


_live = APIRouter(tags=["management"])


@_live.get("/livez", response_model=Alive, summary="Liveness: the process answers")
async def livez() -> Alive:
    return Alive()


async def alive() -> Alive:
    """The minimal `/healthz` of a public port."""
    return Alive()


def management_app(*routers: APIRouter, title: str, shared: FastAPI | None = None) -> FastAPI:
    app = FastAPI(
        title=title,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=tracing.untraced_telemetry(),
    )
    if shared is not None:
        app.state = shared.state  # the runtime the public app's lifespan opens
    errors.install(app)
    app.include_router(_live)
    for router in routers:
        app.include_router(router)
    return app


_registered = False


def register_connection_metrics() -> None:
    """Export `relay_http_*` (relay_core.connguard) in the default registry, once
    per process (state and the runner use it; the gateway and the events
    service have registries of their own and register a collector there)."""
    global _registered
    if not _registered:
        REGISTRY.register(ConnectionCollector())
        _registered = True
