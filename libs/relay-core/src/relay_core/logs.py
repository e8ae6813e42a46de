"""JSON-lines logging to stdout, configured once per entry point.

`run_id` comes from a context variable so every line logged while a run
executes carries it without threading it through calls; `trace_id` and
`span_id` are the current OpenTelemetry span's when tracing is on
(relay_core.tracing), else `trace_id_var` if something set it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import TextIO

from relay_core import tracing

run_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        run_id = run_id_var.get()
        if run_id:
            line["run_id"] = run_id
        ids = tracing.current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        else:
            trace_id = trace_id_var.get()
            if trace_id:
                line["trace_id"] = trace_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(service: str, level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Route every logger (ours, uvicorn's) to one JSON handler on `stream`
    (stdout by default; a command whose stdout is its output logs to stderr)."""
    # JsonFormatter writes none of the caller's file, line, function, thread
    # or process, so they are not collected (logging's documented optimisation,
    # HOWTO "Optimization"): the gateway's "run accepted" line is on the hot
    # path of every request.
    logging._srcfile = None  # documented: skips findCaller
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Access logs are noise at load; metrics count requests.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # One INFO line per HTTP request from httpx (and httpx2, the Anthropic SDK's):
    # a line per model call, on the hot path of every run.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
