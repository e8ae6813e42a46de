"""The Starlette app: routes, and JSON errors for whatever escapes a handler.

No middleware on purpose: a `BaseHTTPMiddleware` would sit between the
streaming response and the client's disconnect, which is exactly what the
stats must see.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay_modelsim import admin
from relay_modelsim.anthropic_api import messages
from relay_modelsim.config import Settings
from relay_modelsim.engine import SimState
from relay_modelsim.faults import Faults
from relay_modelsim.openai_api import chat_completions

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body = {"error": {"type": "http_error", "message": exc.detail}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = {"error": {"type": "api_error", "message": "internal error in modelsim"}}
    return JSONResponse(body, status_code=500)


def create_app(settings: Settings) -> Starlette:
    """A fresh simulator with its own stats and faults."""
    routes = [
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/healthz", admin.healthz, methods=["GET"]),
        Route("/admin/stats", admin.stats, methods=["GET"]),
        Route("/admin/reset", admin.reset, methods=["POST"]),
        Route("/admin/faults", admin.get_faults, methods=["GET"]),
        Route("/admin/faults", admin.put_faults, methods=["PUT"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.sim = SimState(settings=settings, faults=Faults(seed=settings.fault_seed))
    return app
