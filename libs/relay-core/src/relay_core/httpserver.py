"""Run a service's ASGI apps under uvicorn the same way in every service.

Two servers in one process, on one event loop:

- **the public port** (`port`): the service's API, under the connection
  hygiene of `relay_core.connguard` (header and body deadlines, the idle
  keep-alive timeout, a cap on open connections);
- **the management port** (`management_port`): `/livez`, `/readyz`,
  `/metrics` and the detailed `/healthz` (`relay_core.management`). The
  chart's probes and Prometheus use it; neither the Service's public port nor
  the Ingress exposes it. It has its own small cap and its own deadlines, so
  a flood of the public port (20,000 idle connections in the hostile probe
  that found this) can never fail a liveness probe and turn into a restart
  loop.

uvicorn installs its own SIGTERM/SIGINT handlers on the public server and
shuts down gracefully; `timeout_graceful_shutdown` bounds how long open
streams may hold it, so a pod or `make dev` stops within seconds. The
management server ignores signals (`ManagementServer`) and answers until the
public server is done, so probes see the drain.

`X-Forwarded-For` is read only from the addresses and networks in
`trusted_proxies` (uvicorn's proxy-headers middleware); from anyone else it is
ignored and the client is the socket's peer, so a client cannot choose the
address the failed-authentication throttle counts it under.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import uvicorn

from relay_core.connguard import ConnectionLimits, default_max_connections, guarded_protocol

__all__ = [
    "MANAGEMENT_LIMITS",
    "ManagementServer",
    "limits_from",
    "management_server",
    "serve",
    "serve_both",
]

# The management port: probes and scrapes, a handful of clients.
MANAGEMENT_LIMITS = ConnectionLimits(
    header_timeout_s=5.0, body_timeout_s=5.0, keepalive_s=5, max_connections=256
)


def limits_from(settings: Any) -> ConnectionLimits:
    """The public port's limits from a service's settings (`relay_core.config`)."""
    cap = settings.http_max_connections or default_max_connections()
    return ConnectionLimits(
        header_timeout_s=settings.http_header_timeout_s,
        body_timeout_s=settings.http_body_timeout_s,
        body_min_rate=settings.http_body_min_rate,
        keepalive_s=settings.http_keepalive_s,
        max_connections=cap,
    )


class ManagementServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: its process's other server
    (or the runner's own loop) owns SIGTERM and tells it when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(
    app: Any,
    *,
    host: str,
    port: int,
    limits: ConnectionLimits,
    server: str,
    graceful_s: float,
    trusted_proxies: Sequence[str] = (),
    lifespan: Literal["on", "off"] = "on",
) -> uvicorn.Config:
    """libuv's event loop and the C HTTP parser, named rather than uvicorn's
    "auto" so a missing one fails at start instead of silently costing several
    times more per request (every chat is a request in, calls to state, and an
    SSE stream out; the events service writes 10,000 streams). Each service
    that serves HTTP depends on uvloop and httptools."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=guarded_protocol(limits, server),
        ws="none",
        log_config=None,  # relay_core.logs has configured logging already
        access_log=False,
        timeout_keep_alive=limits.keepalive_s,
        timeout_graceful_shutdown=int(graceful_s) or 1,
        lifespan=lifespan,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies),
    )


def management_server(app: Any, *, host: str, port: int) -> ManagementServer:
    """The management port's server (`await server.serve()`; set `should_exit`)."""
    config = _config(
        app,
        host=host,
        port=port,
        limits=MANAGEMENT_LIMITS,
        server="management",
        graceful_s=2,
        lifespan="off",
    )
    return ManagementServer(config)


async def serve_both(public: uvicorn.Server, management: ManagementServer) -> None:
    """Run `management` beside `public` until `public` is done (then stop it)."""
    task = asyncio.create_task(management.serve(), name="management-server")
    try:
        await public.serve()
    finally:
        management.should_exit = True
        await task


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    limits: ConnectionLimits,
    management: Any,
    management_port: int,
    graceful_s: float = 5.0,
    trusted_proxies: Sequence[str] = (),
) -> None:
    """Serve `app` on `port` and `management` on `management_port` until SIGTERM/SIGINT."""
    public = uvicorn.Server(
        _config(
            app,
            host=host,
            port=port,
            limits=limits,
            server="public",
            graceful_s=graceful_s,
            trusted_proxies=trusted_proxies,
        )
    )
    mgmt = management_server(management, host=host, port=management_port)
    with asyncio.Runner(loop_factory=public.config.get_loop_factory()) as runner:
        runner.run(serve_both(public, mgmt))
