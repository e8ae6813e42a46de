"""The agent loop's spans: one `chat {model}` per model call, one
`execute_tool {name}` per tool call, in OpenTelemetry's GenAI semantic
conventions (and OpenInference's span kinds and token counts, which Arize
Phoenix reads), so any LLM-aware trace UI shows a run without custom parsing.

Decisions:

- Built on `relay_core.tracing`: with tracing off every function here is a
  test of one flag and returns None or a shared no-op; nothing is allocated.
- A model call's span is NOT made current: the loop streams it from an async
  generator, and a context token must not cross a `yield`. It is ended by
  `tracing.ended`, whatever ends the call (a normal end, an error, a stop
  that closes the generator). A tool's span is current (its coroutine runs
  in one piece), so what the tool calls (document search through state)
  nests under it.
- Relay's own facts ride along under `relay.*`: the call's cost in USD, the
  circuit breaker's decision (the models skipped because their circuit was
  open), the fallback taken (the chain's first model, when another answers),
  the retry number, and the call's status class (`call_outcome`).
- No prompt or completion text unless `RELAY_TRACE_CONTENT=true`
  (`tracing.CONTENT`); then as `gen_ai.input.messages` /
  `gen_ai.output.messages` JSON, capped at `CONTENT_CAP` characters.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from relay_agent.providers.base import ProviderError, TurnDone, call_outcome
from relay_core import tracing
from relay_core.models import ModelSpec, cost_usd

__all__ = ["CONTENT_CAP", "call_failed", "call_succeeded", "chat_span", "tool_span"]

CONTENT_CAP = 16_000


def _content(value: Any) -> str:
    return json.dumps(value, default=str)[:CONTENT_CAP]


def chat_span(
    spec: ModelSpec,
    *,
    step: int,
    retry: int,
    primary: ModelSpec,
    skipped: Sequence[str],
    max_tokens: int,
    messages: list[dict[str, Any]],
) -> tracing.Span | None:
    """The span of one model call (not current; end it with `tracing.ended`)."""
    if not tracing.ENABLED:
        return None
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": spec.provider,
        "gen_ai.system": spec.provider,
        "gen_ai.request.model": spec.upstream_model,
        "gen_ai.request.max_tokens": max_tokens,
        "openinference.span.kind": "LLM",
        "llm.model_name": spec.upstream_model,
        "llm.provider": spec.provider,
        "relay.model": spec.name,
        "relay.step": step,
        "relay.retry": retry,
        "relay.breaker.decision": "allowed",
        "relay.breaker.skipped": list(skipped),
        "relay.fallback": spec.name != primary.name,
    }
    if spec.name != primary.name:
        attributes["relay.fallback.from"] = primary.name
    if tracing.CONTENT:
        attributes["gen_ai.input.messages"] = _content(messages)
        attributes["input.value"] = attributes["gen_ai.input.messages"]
    return tracing.start(f"chat {spec.upstream_model}", attributes=attributes)


def call_succeeded(span: tracing.Span | None, spec: ModelSpec, turn: TurnDone | None) -> float:
    """Record the answer on the span; the call's cost in USD (0 if it was stopped)."""
    cost = cost_usd(spec, turn.input_tokens, turn.output_tokens) if turn is not None else 0.0
    if span is None:
        return cost
    span.set_attribute("relay.outcome", call_outcome(None))
    if turn is None:
        span.set_attribute("relay.stopped", True)  # the run stopped mid-stream
        return cost
    span.set_attributes(
        {
            "gen_ai.response.model": turn.model or spec.upstream_model,
            "gen_ai.response.finish_reasons": [turn.stop_reason],
            "gen_ai.usage.input_tokens": turn.input_tokens,
            "gen_ai.usage.output_tokens": turn.output_tokens,
            "llm.token_count.prompt": turn.input_tokens,
            "llm.token_count.completion": turn.output_tokens,
            "llm.token_count.total": turn.input_tokens + turn.output_tokens,
            "relay.cost_usd": cost,
            "relay.tool_calls": len(turn.tool_calls),
        }
    )
    if tracing.CONTENT:
        span.set_attribute("gen_ai.output.messages", _content(turn.content_blocks))
        span.set_attribute("output.value", _content(turn.content_blocks))
    return cost


def call_failed(span: tracing.Span | None, exc: ProviderError) -> None:
    if span is None:
        return
    outcome = call_outcome(exc)
    span.set_attributes({"relay.outcome": outcome, "error.type": outcome})
    if exc.status:
        span.set_attribute("http.response.status_code", exc.status)
    span.set_status(tracing.Status(tracing.StatusCode.ERROR, exc.message[:200]))


def tool_span(
    name: str, *, call_id: str, step: int, args: dict[str, Any]
) -> contextlib.AbstractContextManager[tracing.Span | None]:
    """The current span of one tool call (a shared no-op when tracing is off)."""
    if not tracing.ENABLED:
        return tracing.span(name)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.type": "function",
        "openinference.span.kind": "TOOL",
        "tool.name": name,
        "relay.step": step,
    }
    if tracing.CONTENT:
        attributes["gen_ai.tool.call.arguments"] = _content(args)
        attributes["input.value"] = attributes["gen_ai.tool.call.arguments"]
    return tracing.span(f"execute_tool {name}", attributes=attributes)
