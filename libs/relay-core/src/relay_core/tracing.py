"""OpenTelemetry tracing for every Relay service: one trace per run.

`relay_core.entrypoint` calls `setup` once per process; the rest of the code
asks `span(...)` for a span and `traceparent()` / `parent_from(...)` to carry
a trace over a hop that is not HTTP (a run's row in Postgres, its queue entry
in Redis).

Decisions:

- **Off unless an OTLP endpoint is set** (`OTEL_EXPORTER_OTLP_ENDPOINT` or
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SDK_DISABLED=true` or
  `OTEL_TRACES_EXPORTER=none` turn it off again). Off costs nothing on the
  hot path: no tracer provider is installed, `span()` hands back one shared
  `nullcontext` (no span object, not even a non-recording one), nothing is
  injected into requests, and FastAPI's own tracing is turned off
  (`fastapi_telemetry`). Every helper here tests `ENABLED` first. The
  Anthropic SDK's own tracing is off either way (`sdk_telemetry`).
- **The standard variables, read by the SDK itself**: headers
  (`OTEL_EXPORTER_OTLP_HEADERS`), sampler (`OTEL_TRACES_SAMPLER`, default
  parent-based always-on), batch sizes (`OTEL_BSP_*`), resource attributes.
  `OTEL_SERVICE_NAME` names the service; unset, it is `relay-<service>`.
- **Export never blocks the event loop**: the SDK's BatchSpanProcessor
  exports on its own thread; ending a span only appends to a bounded deque.
  When the deque is full the SDK drops the span; it reports each drop to the
  `otel.sdk.processor.span.processed` counter of the meter provider it is
  given (its public `meter_provider` parameter; see `batch_processor` for the
  switch that turns the report on). We hand it `_DropMeter`, a meter
  provider with that one counter, which feeds Prometheus'
  `relay_trace_spans_dropped_total` (and `relay_trace_spans_exported_total`),
  so a full queue is visible on the dashboards instead of silent.
- **W3C trace context** (`traceparent`) is the one format on every hop: HTTP
  headers (state_client injects, FastAPI's own telemetry extracts), the
  run's row (`runs.traceparent`), the queue entry's `traceparent` field.
- **No prompt or completion text** goes into a span unless
  `RELAY_TRACE_CONTENT=true` (`CONTENT`): prompts hold user data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi.telemetry import TelemetryConfig
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = [
    "CONTENT",
    "ENABLED",
    "SPANS_DROPPED",
    "SPANS_EXPORTED",
    "Span",
    "SpanKind",
    "Status",
    "StatusCode",
    "TracingConfig",
    "current",
    "current_ids",
    "ended",
    "fastapi_telemetry",
    "in_span",
    "inject",
    "link_to",
    "parent_from",
    "register_metrics",
    "sdk_telemetry",
    "setup",
    "span",
    "start",
    "trace_id_of",
    "traceparent",
]

log = logging.getLogger(__name__)

ENABLED = False  # set once by `setup`; read on every hot path
CONTENT = False  # RELAY_TRACE_CONTENT: prompts and completions in spans
_tracer: Tracer | None = None
_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()

# Paths whose requests are never traced: probes and scrapes, many per second.
UNTRACED_PATHS = ("/healthz", "/livez", "/readyz", "/metrics", "/internal/v1/ready")
# State's batch envelopes: each item is its own span in its run's trace
# (relay_state.batches); the envelope, carrying items of many runs, is in none.
UNTRACED_PREFIX = "/internal/v1/batch/"

SPANS_DROPPED = Counter(
    "relay_trace_spans_dropped_total",
    "Finished spans dropped before export (the exporter's queue was full, or shut down)",
    ["reason"],
)
SPANS_EXPORTED = Counter(
    "relay_trace_spans_exported_total", "Finished spans the batch processor handed to export"
)


def register_metrics(registry: CollectorRegistry) -> None:
    """Expose the span counters on a service's own registry too (gateway and
    events keep one per app; state and runners serve the default one, where
    the counters live)."""
    registry.register(SPANS_DROPPED)
    registry.register(SPANS_EXPORTED)


_W3C = TraceContextTextMapPropagator()
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


class TracingConfig:
    """What `setup` needs, from the service's settings (`RelaySettings` fields)."""

    def __init__(
        self, *, endpoint: str, disabled: bool, exporter: str, service_name: str, content: bool
    ) -> None:
        self.endpoint = endpoint
        self.disabled = disabled
        self.exporter = exporter
        self.service_name = service_name
        self.content = content

    @property
    def on(self) -> bool:
        return bool(self.endpoint) and not self.disabled and self.exporter != "none"


def _safe_url(url: str) -> str:
    """The endpoint without credentials, for the log line."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def setup(service: str, config: TracingConfig) -> None:
    """Install the tracer provider and its OTLP/HTTP exporter, once, if tracing is on."""
    global ENABLED, CONTENT, _tracer
    CONTENT = config.content
    if not config.on:
        log.info("tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT)")
        return
    # Imported here: a process with tracing off never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    name = config.service_name or f"relay-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(batch_processor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("relay")
    ENABLED = True
    log.info(
        "tracing on: OTLP/HTTP to %s",
        _safe_url(config.endpoint),
        extra={"service_name": name, "trace_content": config.content},
    )


def batch_processor(exporter: Any, **options: Any) -> Any:
    """The SDK's BatchSpanProcessor for `exporter`, reporting drops to Prometheus.

    The SDK reports a processor's drops only when
    `OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED` is true as the processor is
    built (it reads it in its constructor, nowhere else); that switch is set
    for this construction alone, so the tracer provider's own per-span
    metrics stay off."""
    from opentelemetry.sdk.environment_variables import (
        OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED as SWITCH,
    )
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    before = os.environ.get(SWITCH)
    os.environ[SWITCH] = "true"
    try:
        return BatchSpanProcessor(exporter, meter_provider=_drop_meter_provider(), **options)
    finally:
        if before is None:
            os.environ.pop(SWITCH, None)
        else:
            os.environ[SWITCH] = before


def _drop_meter_provider() -> Any:
    """A meter provider whose one counter turns the SDK's processor report into
    Prometheus counters (see the module's docstring)."""
    from opentelemetry.metrics import NoOpMeter, NoOpMeterProvider

    class _ProcessedCounter:
        def add(
            self, amount: float, attributes: Mapping[str, Any] | None = None, *a: Any, **k: Any
        ) -> None:
            error = (attributes or {}).get("error.type")
            if error:
                SPANS_DROPPED.labels(str(error)).inc(amount)
            else:
                SPANS_EXPORTED.inc(amount)

    class _DropMeter(NoOpMeter):
        def create_counter(self, name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "otel.sdk.processor.span.processed":
                return _ProcessedCounter()
            return super().create_counter(name, *args, **kwargs)

    class _DropMeterProvider(NoOpMeterProvider):
        def get_meter(self, name: str, *args: Any, **kwargs: Any) -> Any:
            return _DropMeter(name)

    return _DropMeterProvider()


def fastapi_telemetry() -> TelemetryConfig:
    """The `telemetry` argument of every service's `FastAPI(...)`: FastAPI's own
    OpenTelemetry support makes the server span of each request (named by its
    route template, trace context extracted from the request's headers).

    On: request spans only (no spans per dependency, endpoint and
    serialization, no OpenTelemetry metrics or logs: Prometheus and our JSON
    logs have those), probes and scrapes excluded. Off: everything off, so a
    request does not even ask whether a provider is configured."""
    if not ENABLED:
        return untraced_telemetry()
    return {
        "tracing": True,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "auto_configure": False,
        "exclude": _untraced,
    }


def untraced_telemetry() -> TelemetryConfig:
    """The `telemetry` of an app that is never traced, tracing on or off: the
    management port's (probes every few seconds and scrapes are no one's
    trace; FastAPI would otherwise trace them once a tracer provider is set)."""
    return TelemetryConfig(tracing=False, metrics=False, logs=False, auto_configure=False)


def sdk_telemetry() -> dict[str, Any]:
    """The `open_telemetry` option of the Anthropic SDK client: off, tracing on
    or off. Its call span would sit under our `chat` span and time the same
    call; its stream wrapper runs on every chunk of the answer. Measured with
    `bench/cpu.py --trace`, it was about a third of the runner's tracing CPU
    (docs/observability.md, "Cost"); the `chat` span carries what it told
    (model, token counts, status) in the GenAI conventions."""
    return {"traces": False}


def _untraced(scope: Mapping[str, Any]) -> bool:
    path = scope.get("path") or ""
    return path in UNTRACED_PATHS or path.startswith(UNTRACED_PREFIX)


def span(
    name: str,
    *,
    kind: SpanKind | None = None,
    attributes: Mapping[str, Any] | None = None,
    parent: Context | None = None,
    links: Sequence[Link] | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """A span made current for the `with` block, or a shared no-op when tracing
    is off (the block gets None). An exception leaving the block is recorded."""
    if not ENABLED or _tracer is None:
        return _NULL
    return _tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind or SpanKind.INTERNAL,
        attributes=dict(attributes or {}),
        links=links,
    )


def start(
    name: str,
    *,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Link] | None = None,
    parent: Context | None = None,
    start_time_ns: int | None = None,
) -> Span | None:
    """A span that is NOT made current (for code that yields, like an async
    generator, where a context token must not cross a `yield`); the caller
    ends it. None when tracing is off."""
    if not ENABLED or _tracer is None:
        return None
    return _tracer.start_span(
        name,
        context=parent,
        attributes=dict(attributes or {}),
        links=links,
        start_time=start_time_ns,
    )


@contextlib.contextmanager
def ended(s: Span | None) -> Iterator[Span | None]:
    """End `s` when the block ends, recording an exception that leaves it."""
    if s is None:
        yield None
        return
    try:
        yield s
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            s.record_exception(exc)
            s.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        s.end()


def in_span() -> bool:
    """Whether tracing is on and a recording span is current."""
    return ENABLED and trace.get_current_span().is_recording()


def current(s: Span | None) -> contextlib.AbstractContextManager[Any]:
    """Make `s` (a span from `start`) current for a block that does not yield.

    An exception leaving the block is not recorded on `s`: the block is one
    step of work the span's owner records itself (the agent loop's `anext` of
    a model stream ends every stream with StopAsyncIteration, which OTel's
    default recorded as an error event, traceback formatted, on every chat)."""
    if s is None:
        return _NULL
    return trace.use_span(
        s, end_on_exit=False, record_exception=False, set_status_on_exception=False
    )


def traceparent() -> str | None:
    """The current span's context as a W3C `traceparent`, or None."""
    if not ENABLED:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)  # W3C alone: what is stored and sent in a batch item is a traceparent
    return carrier.get("traceparent")


def inject(headers: Any) -> None:
    """Add the current context's `traceparent` to outgoing HTTP `headers`."""
    if ENABLED:
        propagate.inject(headers)


def parent_from(value: str | None) -> Context | None:
    """A context to start spans under, from a stored `traceparent` (None: none/off)."""
    if not ENABLED or not value or _TRACEPARENT.match(value) is None:
        return None
    return _W3C.extract({"traceparent": value})


def link_to(value: str | None) -> list[Link]:
    """A span link to the span a stored `traceparent` names (empty: none/off)."""
    ctx = parent_from(value)
    if ctx is None:
        return []
    return [Link(trace.get_current_span(ctx).get_span_context())]


def trace_id_of(value: str | None) -> str | None:
    """The trace id (32 hex digits) of a `traceparent`, or None."""
    found = _TRACEPARENT.match(value or "")
    return found.group(1) if found else None


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span, for log lines; None when off or none."""
    if not ENABLED:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
