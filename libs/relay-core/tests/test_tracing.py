"""relay_core.tracing without a stack: off costs nothing, a full export queue
drops spans and counts them, and a stored `traceparent` round-trips.

(tests/e2e/test_tracing.py checks the whole path through real services.)"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from relay_core import tracing


def test_off_hands_back_one_shared_no_op() -> None:
    assert not tracing.ENABLED  # nothing in this process called setup with an endpoint
    assert tracing.span("a") is tracing.span("b", attributes={"x": 1})
    with tracing.span("a") as span:
        assert span is None
    assert tracing.start("a") is None
    assert tracing.traceparent() is None
    assert tracing.parent_from("00-" + "1" * 32 + "-" + "2" * 16 + "-01") is None
    assert tracing.link_to("00-" + "1" * 32 + "-" + "2" * 16 + "-01") == []
    assert tracing.current_ids() is None
    assert not tracing.in_span()
    assert tracing.fastapi_telemetry()["tracing"] is False
    assert tracing.sdk_telemetry() == {"traces": False}


def test_setup_without_an_endpoint_stays_off() -> None:
    config = tracing.TracingConfig(
        endpoint="", disabled=False, exporter="otlp", service_name="", content=False
    )
    tracing.setup("gateway", config)
    assert not tracing.ENABLED
    assert not tracing.TracingConfig(
        endpoint="http://x:4318", disabled=True, exporter="otlp", service_name="", content=False
    ).on
    assert not tracing.TracingConfig(
        endpoint="http://x:4318", disabled=False, exporter="none", service_name="", content=False
    ).on


def test_trace_id_of_a_stored_traceparent() -> None:
    value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tracing.trace_id_of(value) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert tracing.trace_id_of(None) is None
    assert tracing.trace_id_of("garbage") is None


def test_the_endpoint_is_logged_without_credentials() -> None:
    assert tracing._safe_url("https://user:secret@otlp.example.org:4318/x?k=v") == (
        "https://otlp.example.org:4318/x"
    )


class _Stuck(SpanExporter):
    """An exporter whose backend does not answer until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()  # the export worker is stuck in `export`
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_a_full_export_queue_drops_spans_and_counts_them() -> None:
    """What a slow or dead backend does: spans are dropped (never waited for)
    and `relay_trace_spans_dropped_total{reason="queue_full"}` counts them."""
    dropped = tracing.SPANS_DROPPED.labels("queue_full")
    before = dropped._value.get()
    exporter = _Stuck()
    processor = tracing.batch_processor(
        exporter, max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=10
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    # The first batch first, until the worker is stuck exporting it: the SDK
    # counts a drop when it finds the queue full and then appends anyway
    # (evicting the oldest), so a worker taking a batch between the two would
    # export a span also counted dropped (seen: 6 exported + 45 dropped of 50).
    for i in range(2):
        tracer.start_span(f"s{i}").end()
    assert exporter.entered.wait(10), "the export worker never took the first batch"
    for i in range(2, 50):
        tracer.start_span(f"s{i}").end()  # returns at once, however stuck the exporter
    assert dropped._value.get() - before >= 40
    exporter.release.set()
    provider.shutdown()
    assert exporter.exported + dropped._value.get() - before == 50


def test_a_step_made_current_records_no_error_on_the_span() -> None:
    """Regression (issue 14): `tracing.current` around the agent loop's `anext` of a
    model stream recorded the StopAsyncIteration that ends every stream on the chat
    span, as an exception event (its traceback formatted) and an ERROR status."""
    provider = TracerProvider()
    span = provider.get_tracer("test").start_span("chat")
    with pytest.raises(StopAsyncIteration), tracing.current(span):
        raise StopAsyncIteration
    span.end()
    assert isinstance(span, ReadableSpan)
    assert list(span.events) == []
    assert span.status.status_code == StatusCode.UNSET
