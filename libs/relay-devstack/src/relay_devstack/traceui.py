"""The trace UI of `make dev TRACES=1`: Arize Phoenix, pip-installed by the
Makefile into `.relay/tools/phoenix` (its own virtual environment: ~630 MB,
kept out of the workspace lock, the images and CI), started beside the stack
with its data under the dev data folder.

Why Phoenix: it is pip-installable (no Docker), speaks OTLP/HTTP on the same
port as its UI, and shows the runner's `chat` and `execute_tool` spans as LLM
and tool spans (their OpenInference span kinds and token counts). Why not by
default: measured here it adds ~480 MB of memory and tens of seconds to the
start (docs/observability.md#traces has the figures).

Every service of the stack then exports to it
(`OTEL_EXPORTER_OTLP_ENDPOINT`). Its OTLP gRPC port is moved off 4317 to a
free port so it cannot collide with a collector the developer runs. It starts
while the services start and is waited for after them, so the two overlap;
spans the services end before it listens are retried by their exporters.
Unlike a service it is not restarted by `make dev`'s supervisor.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from relay_devstack.procs import Child, free_port, wait_until

__all__ = ["TraceUI"]

logger = logging.getLogger(__name__)


@dataclass
class TraceUI:
    command: str  # the `phoenix` console script
    data_dir: Path
    port: int
    child: Child | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TraceUI:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "PHOENIX_WORKING_DIR": str(self.data_dir),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(free_port()),
            "PHOENIX_TELEMETRY_ENABLED": "false",
        }
        self.child = Child(
            "traces",
            [self.command, "serve"],
            log_path=self.data_dir / "phoenix.log",
            env={**os.environ, **env},
        )
        return self

    def wait_ready(self, timeout_s: float) -> None:
        wait_until(self._ready, timeout_s=timeout_s, what=f"the trace UI on port {self.port}")
        logger.info("trace UI ready at %s", self.url)

    def _ready(self) -> bool:
        if self.child is not None and not self.child.alive():
            raise RuntimeError(f"the trace UI (phoenix) exited:\n{self.child.tail()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None
