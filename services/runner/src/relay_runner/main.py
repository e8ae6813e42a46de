"""`relay-runner`: the worker and its health server in one asyncio loop,
started by relay_core.entrypoint (settings, logs, GC) like every service.

Decisions:
- Its HTTP server is the management port's (probes and metrics; the runner
  has no public API), run as a task with its signal handling turned off
  (relay_core.httpserver.ManagementServer): the runner owns SIGTERM/SIGINT,
  because stopping means draining runs, not just closing a port.
- SIGTERM: stop claiming, let runs in flight finish until
  `RELAY_DRAIN_TIMEOUT_S`, then hand the rest back to the queue (they resume
  on another runner from their last checkpoint), stop the health server,
  exit 0. A second signal skips the rest of the drain.
- A models file or tool plugin that cannot be loaded is a configuration
  error (entrypoint.ConfigError: one log line, exit 2), not a crash.
- The loop is uvloop's, as every other service's (`relay_core.httpserver`):
  asyncio's own loop, in Python, cost the runner about a fifth more CPU per
  run under a burst (every token is a few callbacks, socket reads and
  writes).
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop

from relay_core import entrypoint
from relay_core.httpserver import ManagementServer, management_server
from relay_runner.config import RunnerSettings
from relay_runner.health import create_app
from relay_runner.looplag import watch_loop_lag
from relay_runner.runtime import Runtime
from relay_runner.worker import Worker

log = logging.getLogger(__name__)


def _health_server(settings: RunnerSettings, rt: Runtime, worker: Worker) -> ManagementServer:
    """The management port's server: its only HTTP server (no public API)."""
    return management_server(
        create_app(rt, worker), host=settings.host, port=settings.management_port
    )


async def serve(settings: RunnerSettings) -> None:
    try:
        rt = Runtime.create(settings)
    except (OSError, ValueError, ImportError, AttributeError, TypeError) as exc:
        raise entrypoint.ConfigError(
            ("RELAY_MODELS_FILE", "RELAY_EXTRA_TOOLS"), f"{type(exc).__name__}: {exc}"
        ) from None
    log.info(
        "runner configured",
        extra={
            "pool": settings.runner_pool,
            "consumer": settings.consumer_name,
            "concurrency": settings.runner_concurrency,
            "management_port": settings.management_port,
            "models": rt.catalog.names(),
            "tools": rt.registry.names(),
        },
    )
    worker = Worker(rt)
    server = _health_server(settings, rt, worker)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        log.info("signal received; draining", extra={"signal": sig.name})
        rt.stopping.set()
        if signals > 1:
            rt.force_stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    rt.keeper.start()
    server_task = asyncio.create_task(server.serve())
    lag_task = asyncio.create_task(watch_loop_lag())
    worker_task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait(
            {worker_task, server_task, asyncio.ensure_future(rt.stopping.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )
        rt.stopping.set()
        await worker_task
        await worker.drain()
    finally:
        server.should_exit = True
        lag_task.cancel()
        await asyncio.gather(server_task, lag_task, return_exceptions=True)
        await rt.close()
        log.info("runner stopped")


def _run(settings: RunnerSettings) -> None:
    uvloop.run(serve(settings))


def main() -> None:
    entrypoint.run("runner", RunnerSettings, _run)


if __name__ == "__main__":
    main()
