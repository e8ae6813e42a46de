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
    loop: str = "asyncio",
    http: str = "h11",
) -> None:
    """`loop`/`http` are explicit, not uvicorn's "auto": a service that wants
    uvloop/httptools (the events service's fan-out) depends on them and asks,
    and their presence in the shared dev venv changes nothing for the others."""
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
