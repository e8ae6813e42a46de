"""`relay-modelsim`: run the simulator under uvicorn.

Decisions:

- Logs are JSON lines on stdout through `logging`; uvicorn's own loggers are
  routed to the same handler (`log_config=None` keeps uvicorn from installing
  its coloured formatters).
- SIGTERM and SIGINT: uvicorn catches them, stops accepting connections, gives
  open streams `shutdown_grace_s` to finish and then cancels them (they get a
  provider error event, see `streaming`). After shutting down, uvicorn
  re-raises the signal it caught against whatever handler was installed before
  it started. Our handler, installed first, turns that into `SystemExit(0)`, so
  a signalled shutdown exits with status 0 instead of dying by the signal; the
  same handler also ends the process cleanly on a signal that arrives before
  uvicorn has installed its own.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from datetime import UTC, datetime
from types import FrameType
from typing import Any, cast

import uvicorn
from pydantic import ValidationError

from relay_modelsim.app import create_app
from relay_modelsim.config import Settings

__all__ = ["JsonFormatter", "main"]

logger = logging.getLogger(__name__)

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Outside uvicorn's watch (before it starts, after it stops): exit with 0."""
    logger.info("stopped", extra={"signal": signal.Signals(signum).name})
    raise SystemExit(0)


def main() -> None:
    configure_logging("INFO")
    try:
        settings = Settings()
    except ValidationError as exc:
        logger.error("invalid settings", extra={"errors": exc.errors(include_url=False)})
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_on_signal)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=settings.access_log,
        lifespan="off",
    )
    # Annotated `int | None` by uvicorn, which only passes it to asyncio.wait_for
    # as a timeout: a fraction of a second works and is kept.
    config.timeout_graceful_shutdown = cast(int, settings.shutdown_grace_s)
    logger.info("modelsim starting", extra={"host": settings.host, "port": settings.port})
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
