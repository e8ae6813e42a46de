"""One trace per run, checked against a real OTLP/HTTP receiver (tests/e2e/otlp.py).

A stack whose services export to the receiver (`OTEL_EXPORTER_OTLP_ENDPOINT`,
as an operator would set it) runs a run with a tool call; what arrives must be
one trace: the gateway's submit request at its root, spans from gateway,
state, runner and events, model and tool spans with the GenAI attributes and
token counts equal to the run's `usage` events. A run whose runner is killed
with SIGKILL mid-stream is resumed by another runner in the same trace, the
`resumed` span linked to the first attempt. With tracing off (the shared
stack: no endpoint), nothing is exported, nothing fails, and a run has no
trace id.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from relay_devstack.harness import wait_for
from relay_devstack.stack import Stack
from tests.e2e.otlp import Receiver, Span
from tests.e2e.sse import Received, read_events

SERVER = 2  # SpanKind.SERVER in the OTLP protobuf
TOOL_RUN = {"tools": [{"name": "calculator", "args": {"expression": "6*7"}}], "tokens": 12}


def sim(text: str, directive: dict[str, Any]) -> str:
    return f"{text}\n#sim {json.dumps(directive)}"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced(stack_factory: Any, receiver: Receiver) -> Stack:
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    stack: Stack = stack_factory({"all": otel, "runner": {"RELAY_LEASE_TTL_S": "3"}})
    return stack


def submit(stack: Stack, key: str, message: str) -> dict[str, Any]:
    resp = httpx.post(
        f"{stack.gateway_url}/v1/runs",
        json={"message": message},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def get_run(stack: Stack, key: str, run_id: str) -> dict[str, Any]:
    resp = httpx.get(
        f"{stack.gateway_url}/v1/runs/{run_id}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def by_name(spans: list[Span], prefix: str) -> list[Span]:
    return [s for s in spans if s.name.startswith(prefix)]


def ancestors(span: Span, ids: dict[str, Span]) -> list[str]:
    out = []
    while span.parent_id in ids:
        span = ids[span.parent_id]
        out.append(span.span_id)
    return out


def usage_totals(events: list[Received]) -> tuple[int, int]:
    usage = [e.data for e in events if e.event == "usage"]
    return sum(u["input_tokens"] for u in usage), sum(u["output_tokens"] for u in usage)


def test_one_trace_per_run_with_a_tool_call(traced: Stack, receiver: Receiver) -> None:
    key = traced.new_key(f"trace-{uuid.uuid4().hex[:8]}")
    accepted = submit(traced, key, sim("What is 6*7?", TOOL_RUN))
    run_id = accepted["run_id"]
    events = read_events(accepted["events_url"], key)
    assert events[-1].event == "done" and events[-1].data["status"] == "succeeded"
    run = get_run(traced, key, run_id)
    trace_id = run["trace_id"]
    assert trace_id and len(trace_id) == 32

    def complete() -> list[Span] | None:
        spans = receiver.trace(trace_id)
        services = {s.service for s in spans}
        runs = by_name(spans, "run")
        wanted = {"relay-gateway", "relay-state", "relay-runner", "relay-events"}
        return spans if wanted <= services and runs and by_name(spans, "deliver") else None

    spans = wait_for(complete, timeout_s=20, what="the run's spans from all four services")
    ids = {s.span_id: s for s in spans}

    # The submit request is the root; everything else hangs under it.
    roots = [s for s in spans if not s.parent_id]
    assert [(r.service, r.name, r.kind) for r in roots] == [
        ("relay-gateway", "POST /v1/runs", SERVER)
    ]
    for s in spans:
        seen = set()
        while s.parent_id:
            assert s.parent_id in ids, f"{s.name} ({s.service}) has a parent outside the trace"
            assert s.span_id not in seen
            seen.add(s.span_id)
            s = ids[s.parent_id]

    # The runner's spans hang under the run span: model calls, the tool, checkpoints.
    (run_span,) = by_name(spans, "run")
    assert run_span.attributes["relay.run_id"] == run_id
    assert run_span.attributes["relay.attempt"] == 1
    chats = by_name(spans, "chat ")
    assert len(chats) == 2  # the turn that asks for the tool, the answer
    (tool,) = by_name(spans, "execute_tool ")
    checkpoints = by_name(spans, "checkpoint ")
    assert {s.attributes["relay.checkpoint.kind"] for s in checkpoints} == {
        "model_turn",
        "tool_result",
    }
    for child in [*chats, tool, *checkpoints]:
        assert child.parent_id == run_span.span_id, child.name

    # No span times a call twice: no client span of a batched state call, no
    # batch envelope, no state span of a checkpoint write under the runner's
    # `checkpoint` span, no SDK call span under `chat` (docs/observability.md).
    batched = ("state POST /runs", "POST /internal/v1/batch", "POST /internal/v1/runs/{run_id}/ch")
    doubled = [s.name for s in spans if s.name.startswith(batched)]
    assert not doubled and not by_name(spans, "anthropic"), doubled
    for name in ("POST /internal/v1/runs", "POST /internal/v1/runs/{run_id}/claim"):
        assert [s.service for s in spans if s.name == name] == ["relay-state"], name

    # GenAI semantic conventions, with the run's own token counts.
    for chat in chats:
        a = chat.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "anthropic"
        assert chat.name == f"chat {a['gen_ai.request.model']}"
        assert a["gen_ai.response.model"]
        assert a["relay.cost_usd"] > 0 and a["relay.outcome"] == "2xx"
        assert a["relay.breaker.decision"] == "allowed" and a["relay.fallback"] is False
        assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    spans_in = sum(c.attributes["gen_ai.usage.input_tokens"] for c in chats)
    spans_out = sum(c.attributes["gen_ai.usage.output_tokens"] for c in chats)
    assert (spans_in, spans_out) == usage_totals(events)
    assert spans_in > 0 and spans_out > 0
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "calculator"
    assert tool.attributes["relay.tool.ok"] is True
    assert "gen_ai.tool.call.arguments" not in tool.attributes

    # The events service's first token, in the run's trace.
    (first,) = by_name(spans, "deliver first token")
    assert first.service == "relay-events" and first.attributes["relay.run_id"] == run_id

    # Every log line of the run carries its trace and the span it was logged in.
    lines = [
        json.loads(line) for line in traced.log_path("runner-background").read_text().splitlines()
    ]
    of_run = [line for line in lines if line.get("run_id") == run_id]
    assert of_run and all(line.get("trace_id") == trace_id for line in of_run)
    assert all(len(line.get("span_id", "")) == 16 for line in of_run)
    assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")]


def test_probes_are_not_traced(traced: Stack, receiver: Receiver) -> None:
    for name in ("gateway", "events", "state"):
        httpx.get(traced.url(name) + "/healthz", timeout=5)  # the public port's
        for path in ("/livez", "/readyz", "/healthz", "/metrics"):  # the management port's
            httpx.get(traced.management_url(name) + path, timeout=5)
    marker = submit(traced, traced.new_key("probe-marker"), sim("after the probes", {"tokens": 2}))
    # A span the services ended after the probes has arrived: so would theirs have.
    wait_for(
        lambda: any(s.attributes.get("relay.run_id") == marker["run_id"] for s in receiver.spans),
        timeout_s=20,
        what="the marker run's spans",
    )
    probed = [s.name for s in receiver.spans if s.name.split(" ")[-1].endswith(("z", "metrics"))]
    assert not probed, probed
    metrics = httpx.get(traced.management_url("gateway") + "/metrics", timeout=5).text
    assert "relay_trace_spans_exported_total" in metrics


def test_a_run_resumed_after_kill9_stays_in_its_trace(traced: Stack, receiver: Receiver) -> None:
    key = traced.new_key(f"kill-{uuid.uuid4().hex[:8]}")
    accepted = submit(traced, key, sim("a long answer", {"tokens": 120, "token_delay_ms": 40}))
    run_id = accepted["run_id"]
    read_events(accepted["events_url"], key, stop_after=8)  # streaming: in the model call
    traced.kill("runner-background", signal.SIGKILL)
    traced.start_extra_runner("background", "runner-b2", env={"RELAY_LEASE_TTL_S": "3"})
    run = wait_for(
        lambda: (r := get_run(traced, key, run_id))["status"] == "succeeded" and r,
        timeout_s=60,
        what="the run to finish on the second runner",
    )
    assert run["attempts"] == 2
    trace_id = run["trace_id"]

    def resumed() -> list[Span] | None:
        spans = receiver.trace(trace_id)
        return spans if by_name(spans, "resumed") and by_name(spans, "run") else None

    spans = wait_for(resumed, timeout_s=20, what="the second attempt's spans")
    (run_span,) = [s for s in by_name(spans, "run") if s.attributes["relay.attempt"] == 2]
    assert run_span.attributes["relay.runner"] == "runner-b2"
    (resumed_span,) = by_name(spans, "resumed")
    assert resumed_span.parent_id == run_span.span_id
    assert resumed_span.attributes["relay.previous_attempt"] == 1
    # Both claims are in the trace; `resumed` links to the first attempt's.
    claims = [
        s
        for s in spans
        if s.service == "relay-state" and s.name == "POST /internal/v1/runs/{run_id}/claim"
    ]
    assert len(claims) == 2
    (link,) = resumed_span.links
    assert link[0] == trace_id
    linked = {c.span_id: c for c in claims}[link[1]]
    assert run_span.span_id not in ancestors(linked, {s.span_id: s for s in spans})
    # The second attempt's model call is in the trace, under its run span.
    assert [c.parent_id for c in by_name(spans, "chat ")].count(run_span.span_id) >= 1


def test_tracing_off_exports_nothing_and_fails_nothing(stack: Stack, receiver: Receiver) -> None:
    """The shared stack has no OTLP endpoint: no exporter, no span, no trace id."""
    key = stack.new_key(f"off-{uuid.uuid4().hex[:8]}")
    accepted = submit(stack, key, sim("What is 6*7?", TOOL_RUN))
    events = read_events(accepted["events_url"], key)
    assert events[-1].data["status"] == "succeeded"
    assert any(e.event == "tool_end" and e.data["ok"] for e in events)
    assert get_run(stack, key, accepted["run_id"])["trace_id"] is None
    # The receiver is the traced stack's; nothing of this run may reach it.
    assert not [s for s in receiver.spans if s.attributes.get("relay.run_id") == accepted["run_id"]]
    for name in ("gateway", "state", "runner-background", "events"):
        lines = [json.loads(line) for line in stack.log_path(name).read_text().splitlines()]
        assert any(line["msg"].startswith("tracing off") for line in lines), name
        assert not [line for line in lines if "trace_id" in line or "span_id" in line], name
        assert not [line for line in lines if line["logger"].startswith("opentelemetry")], name
