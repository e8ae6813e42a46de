"""`relay-events`: JSON logs, then the app under uvicorn (relay_core.httpserver).

uvicorn handles SIGTERM/SIGINT: it stops accepting, sse-starlette ends the
open streams (clients reconnect elsewhere with Last-Event-ID), and the
lifespan's shutdown stops the hub and closes its connections.
"""

from __future__ import annotations

import logging

from relay_core.gctune import tune_gc
from relay_core.httpserver import serve
from relay_core.logs import configure
from relay_events.app import create_app
from relay_events.config import EventsSettings

log = logging.getLogger(__name__)


def main() -> None:
    settings = EventsSettings()
    configure("events", settings.log_level)
    tune_gc()  # full collections stall every stream; see relay_core.gctune
    log.info("events starting", extra={"host": settings.host, "port": settings.port})
    serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        graceful_s=settings.graceful_shutdown_s,
    )


if __name__ == "__main__":
    main()
