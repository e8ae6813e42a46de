"""Run an ASGI app under uvicorn the same way in every service.

uvicorn installs its own SIGTERM/SIGINT handlers and shuts down gracefully;
`timeout_graceful_shutdown` bounds how long open streams may hold it, so a pod
or `make dev` stops within seconds.
"""

from __future__ import annotations

from typing import Any

import uvicorn


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    graceful_s: float = 5.0,
    loop: str = "uvloop",
    http: str = "httptools",
) -> None:
    """libuv's event loop and the C HTTP parser, named rather than uvicorn's
    "auto" so a missing one fails at start instead of silently costing several
    times more per request (every chat is a request in, calls to state, and an
    SSE stream out; the events service writes 10,000 streams). Each service
    that calls `serve` depends on uvloop and httptools."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http=http,
        log_config=None,  # relay_core.logs has configured logging already
        access_log=False,
        timeout_graceful_shutdown=int(graceful_s) or 1,
        lifespan="on",
        proxy_headers=True,
    )
    uvicorn.Server(config).run()
