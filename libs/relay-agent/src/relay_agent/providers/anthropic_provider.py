"""`AnthropicProvider`: one streamed turn through the official `anthropic` SDK.

Decisions:
- The SDK's `messages.stream(...)` is used as an async context manager
  wrapped around the whole iteration, so whatever ends the generator
  (a normal end, `aclose()` from a consumer that stopped, a task
  cancellation) closes the HTTP response: the provider stops generating.
- The client is created by the caller at start-up with `max_retries=0`: the
  agent loop decides about retries and fallbacks, and a hidden SDK retry would
  double-bill a turn whose first try streamed half its tokens.
- Any failure becomes a `ProviderError`. A mid-stream `event: error` arrives
  as an `APIStatusError` with the response's 200 status; its error type
  (`overloaded_error`, ...) decides whether it is retryable.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from relay_agent.providers.base import (
    RETRYABLE_ERROR_TYPES,
    ProviderError,
    TextDelta,
    ToolCall,
    TurnDone,
    TurnEvent,
    is_retryable_status,
    retry_after_s,
)
from relay_core import tracing
from relay_core.models import ModelSpec

__all__ = ["AnthropicProvider", "content_blocks", "provider_error"]

log = logging.getLogger(__name__)


class AnthropicProvider:
    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self._client = client

    @classmethod
    def create(
        cls, *, base_url: str | None, api_key: str, timeout_s: float = 300.0
    ) -> AnthropicProvider:
        client = anthropic.AsyncAnthropic(
            base_url=base_url or None,
            api_key=api_key,
            max_retries=0,
            timeout=timeout_s,
            # The SDK's own call span, under the loop's `chat` span (relay_core.tracing)
            open_telemetry=tracing.sdk_telemetry(),  # type: ignore[arg-type]
        )
        return cls(client)

    async def aclose(self) -> None:
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
        try:
            async with self._client.messages.stream(**kwargs) as stream:
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield TextDelta(event.delta.text)
                final = await stream.get_final_message()
        except Exception as exc:  # every SDK and transport failure becomes a ProviderError
            raise provider_error(exc) from exc
        blocks = content_blocks(final.content)
        yield TurnDone(
            content_blocks=blocks,
            tool_calls=[
                ToolCall(b["id"], b["name"], dict(b.get("input") or {}))
                for b in blocks
                if b["type"] == "tool_use"
            ],
            stop_reason=str(final.stop_reason or "end_turn"),
            input_tokens=int(final.usage.input_tokens or 0),
            output_tokens=int(final.usage.output_tokens or 0),
            model=str(getattr(final, "model", "") or ""),
        )


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
