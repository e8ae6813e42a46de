"""`relay-gateway`: the app under uvicorn, started by relay_core.entrypoint.

uvicorn handles SIGTERM/SIGINT: it stops accepting, gives open requests and
streams `graceful_shutdown_s`, then runs the lifespan's shutdown (closing the
state and Redis clients). A model catalog that cannot be loaded is a bad
setting like any other: one log line, exit 2.
"""

from __future__ import annotations

from relay_core import entrypoint
from relay_core.httpserver import limits_from, serve
from relay_gateway.app import create_app, create_management_app
from relay_gateway.config import GatewaySettings


def _serve(settings: GatewaySettings) -> None:
    # Only the catalog's own errors are a bad RELAY_MODELS_FILE (create_app raises
    # ConfigError for them); anything else failing in create_app, say a metrics
    # folder on a read-only filesystem, is reported as itself.
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
    entrypoint.run("gateway", GatewaySettings, _serve)


if __name__ == "__main__":
    main()
