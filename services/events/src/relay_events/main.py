"""`relay-events`: the app under uvicorn, started by relay_core.entrypoint.

uvicorn handles SIGTERM/SIGINT: it stops accepting, sse-starlette ends the
open streams (clients reconnect elsewhere with Last-Event-ID), and the
lifespan's shutdown stops the hub and closes its connections.
"""

from __future__ import annotations

from relay_core import entrypoint
from relay_core.httpserver import limits_from, serve
from relay_events.app import create_app, create_management_app
from relay_events.config import EventsSettings


def _serve(settings: EventsSettings) -> None:
    app = create_app(settings)
    serve(
        app,
        host=settings.host,
        port=settings.port,
        limits=limits_from(settings),
        management=create_management_app(app),
        management_port=settings.management_port,
        graceful_s=settings.graceful_shutdown_s,
        trusted_proxies=settings.trusted_proxy_list,
    )


def main() -> None:
    entrypoint.run("events", EventsSettings, _serve)


if __name__ == "__main__":
    main()
