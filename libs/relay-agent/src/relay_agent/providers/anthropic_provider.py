"""`AnthropicProvider`: one streamed turn through the official `anthropic` SDK.

Decisions:
- The SDK's lowest-level streaming interface: `messages.with_streaming_response
  .create(stream=True)` and `AsyncStream.raw_events`, each event's JSON parsed
  once and folded into the turn by `anthropic_events.TurnBuilder` (why, and
  what is kept: see there). The response is an async context manager wrapped
  around the whole iteration, so whatever ends the generator (a normal end,
  `aclose()` from a consumer that stopped, a task cancellation) closes the
  HTTP response: the provider stops generating.
- The SDK's aiohttp transport (`DefaultAioHttpClient`, the `aiohttp` extra),
  not its default httpx one: under a burst of streams httpx's pool examines
  every connection it holds each time a request starts or a response closes
  (a socket check per idle connection), and with 200 streams open that and
  the reconnects past its keep-alive limit were most of the SDK's cost.
  Measured on 200 concurrent 20-token streams to modelsim: 5.5 ms of CPU per
  stream with httpx and typed events, 2.5 with aiohttp, 1.8 with aiohttp and
  raw events. The client is created lazily, on the first turn (an aiohttp
  session belongs to the running event loop).
- The client is created by the caller at start-up with `max_retries=0`: the
  agent loop decides about retries and fallbacks, and a hidden SDK retry would
  double-bill a turn whose first try streamed half its tokens.
- Any failure becomes a `ProviderError`. A mid-stream `event: error` arrives
  as an `APIStatusError` with the response's 200 status; its error type
  (`overloaded_error`, ...) decides whether it is retryable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from relay_agent.providers.anthropic_events import TurnBuilder, stream_error
from relay_agent.providers.base import (
    RETRYABLE_ERROR_TYPES,
    ProviderError,
    TextDelta,
    TurnEvent,
    is_retryable_status,
    retry_after_s,
)
from relay_core import tracing
from relay_core.models import ModelSpec

__all__ = ["AnthropicProvider", "content_blocks", "provider_error"]

log = logging.getLogger(__name__)


class AnthropicProvider:
    def __init__(self, client: anthropic.AsyncAnthropic | None = None, **options: Any) -> None:
        """`client`, or the `options` of the `AsyncAnthropic` made on first use."""
        self._client = client
        self._options = options

    @classmethod
    def create(
        cls, *, base_url: str | None, api_key: str, timeout_s: float = 300.0
    ) -> AnthropicProvider:
        return cls(
            base_url=base_url or None,
            api_key=api_key,
            max_retries=0,
            timeout=timeout_s,
            # The SDK's own call span, under the loop's `chat` span (relay_core.tracing)
            open_telemetry=tracing.sdk_telemetry(),
        )

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            self._client = anthropic.AsyncAnthropic(
                http_client=anthropic.DefaultAioHttpClient(), **self._options
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def stream_turn(
        self,
        *,
        spec: ModelSpec,
        system: str | None,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        max_tokens: int,
    ) -> AsyncIterator[TurnEvent]:
        kwargs: dict[str, Any] = {
            "model": spec.upstream_model,
            "max_tokens": max_tokens,
            "messages": messages,
        }
        if system:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = tools
        turn = TurnBuilder()
        try:
            create = self.client.messages.with_streaming_response.create
            async with create(stream=True, **kwargs) as response:
                status = response.status_code
                async for sse in anthropic.AsyncStream.raw_events(response.http_response):
                    kind = sse.event
                    if kind is None or kind == "ping" or not sse.data:
                        continue
                    data = json.loads(sse.data)
                    if kind == "error":
                        raise stream_error(data, status)
                    text = turn.feed(kind, data)
                    if text is not None:
                        yield TextDelta(text)
            done = turn.turn()
        except Exception as exc:  # every SDK and transport failure becomes a ProviderError
            raise provider_error(exc) from exc
        yield done


def content_blocks(content: Any) -> list[dict[str, Any]]:
    """The SDK's content blocks as plain Anthropic-format dicts (what is stored)."""
    out: list[dict[str, Any]] = []
    for block in content:
        if block.type == "text":
            out.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            out.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
        else:
            out.append(block.model_dump(mode="json", exclude_none=True))
    return out


def provider_error(exc: Exception) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        err_type = _error_type(exc.body)
        status = int(exc.status_code)
        if status < 400:  # an error event after the stream had started
            retryable = err_type in RETRYABLE_ERROR_TYPES
        else:
            retryable = is_retryable_status(status)
        return ProviderError(
            f"{err_type or 'error'} (HTTP {status}): {_error_message(exc)}",
            retryable=retryable,
            status=status,
            retry_after_s=retry_after_s(getattr(exc.response, "headers", None)),
            error_type=err_type,
        )
    if isinstance(exc, anthropic.APIConnectionError):
        cause = "timeout" if isinstance(exc, anthropic.APITimeoutError) else "connection"
        return ProviderError(
            f"connection failed: {type(exc).__name__}", retryable=True, cause=cause
        )
    log.warning("model stream failed", extra={"error_type": type(exc).__name__})
    return ProviderError(f"model stream failed: {type(exc).__name__}", retryable=True)


def _error_type(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return str(err["type"])
    return ""


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:300]
    return str(exc)[:300]
