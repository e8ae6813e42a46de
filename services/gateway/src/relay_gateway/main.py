"""`relay-gateway`: JSON logs, then the app under uvicorn (relay_core.httpserver).

uvicorn handles SIGTERM/SIGINT: it stops accepting, gives open requests and
streams `graceful_shutdown_s`, then runs the lifespan's shutdown (closing the
state and Redis clients). Invalid settings (a placeholder secret outside dev
mode, a malformed value) stop it with one log line naming the problem, never
a traceback that would echo the values it was given.
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from relay_core.gctune import tune_gc
from relay_core.httpserver import serve
from relay_core.logs import configure
from relay_gateway.app import create_app
from relay_gateway.config import GatewaySettings

log = logging.getLogger(__name__)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts)


def main() -> None:
    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        configure("gateway")
        log.error("invalid settings: %s", _describe(exc))
        sys.exit(2)
    configure("gateway", settings.log_level)
    try:
        app = create_app(settings)
    except (OSError, ValueError) as exc:  # the model catalog file
        log.error("cannot load the model catalog %s: %s", settings.models_file, exc)
        sys.exit(2)
    log.info("gateway starting", extra={"host": settings.host, "port": settings.port})
    tune_gc()  # a full collection stalls every open stream; see relay_core.gctune
    serve(
        app,
        host=settings.host,
        port=settings.port,
        graceful_s=settings.graceful_shutdown_s,
    )


if __name__ == "__main__":
    main()
