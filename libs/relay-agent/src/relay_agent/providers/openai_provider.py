"""`OpenAIProvider`: one streamed turn through the official `openai` SDK.

Works with any OpenAI-compatible chat completions server (vLLM, Ollama,
modelsim). The run's history is kept in Anthropic's block format (what is
stored); this module converts it to chat messages on the way out and builds
Anthropic-format content blocks from the streamed answer on the way back.

Decisions:
- `stream_options={"include_usage": True}`: usage arrives in a last chunk with
  no choices; without it a turn could not be billed.
- The stream is used as an async context manager around the iteration, so an
  abandoned or cancelled turn closes the HTTP response.
- The SDK's aiohttp transport (`DefaultAioHttpClient`), as for Anthropic
  (why: `anthropic_provider`), made on the first turn.
- Tool-call arguments stream as JSON fragments per call index; a call whose
  arguments are not a JSON object is passed on with the raw text under
  `_raw_arguments`, so the tool registry answers with a schema error the
  model can read instead of the run crashing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai

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
from relay_core.models import ModelSpec

__all__ = ["OpenAIProvider", "to_openai_messages", "to_openai_tools"]

STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


class OpenAIProvider:
    def __init__(self, client: openai.AsyncOpenAI | None = None, **options: Any) -> None:
        """`client`, or the `options` of the `AsyncOpenAI` made on first use."""
        self._client = client
        self._options = options

    @classmethod
    def create(
        cls, *, base_url: str | None, api_key: str, timeout_s: float = 300.0
    ) -> OpenAIProvider:
        return cls(base_url=base_url or None, api_key=api_key, max_retries=0, timeout=timeout_s)

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                http_client=openai.DefaultAioHttpClient(), **self._options
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
            "messages": to_openai_messages(system, messages),
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            kwargs["tools"] = to_openai_tools(tools)
        acc = _Accumulator()
        try:
            async with await self.client.chat.completions.create(**kwargs) as stream:
                async for chunk in stream:
                    text = acc.add(chunk)
                    if text:
                        yield TextDelta(text)
        except Exception as exc:  # every SDK and transport failure becomes a ProviderError
            raise _provider_error(exc) from exc
        yield acc.done()


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Accumulator:
    text: list[str] = field(default_factory=list)
    calls: dict[int, _PendingCall] = field(default_factory=dict)
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""

    def add(self, chunk: Any) -> str:
        """Fold one chunk in; returns its text delta ('' when none)."""
        self.model = str(getattr(chunk, "model", "") or self.model)
        if chunk.usage is not None:
            self.input_tokens = int(chunk.usage.prompt_tokens or 0)
            self.output_tokens = int(chunk.usage.completion_tokens or 0)
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        if choice.finish_reason:
            self.finish_reason = choice.finish_reason
        delta = choice.delta
        for tc in delta.tool_calls or []:
            pending = self.calls.setdefault(tc.index, _PendingCall())
            pending.id = tc.id or pending.id
            if tc.function is not None:
                pending.name = tc.function.name or pending.name
                pending.arguments += tc.function.arguments or ""
        if delta.content:
            self.text.append(delta.content)
            return str(delta.content)
        return ""

    def done(self) -> TurnDone:
        blocks: list[dict[str, Any]] = []
        text = "".join(self.text)
        if text:
            blocks.append({"type": "text", "text": text})
        calls = []
        for index in sorted(self.calls):
            pending = self.calls[index]
            call = ToolCall(pending.id or f"call_{index}", pending.name, _args(pending.arguments))
            calls.append(call)
            blocks.append(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.args}
            )
        stop = STOP_REASONS.get(self.finish_reason or "", self.finish_reason or "end_turn")
        if calls:
            stop = "tool_use"
        return TurnDone(blocks, calls, stop, self.input_tokens, self.output_tokens, self.model)


def _args(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {"_raw_arguments": raw}
    return value if isinstance(value, dict) else {"_raw_arguments": raw}


def to_openai_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t.get("description", ""),
                "parameters": t.get("input_schema", {"type": "object"}),
            },
        }
        for t in tools
    ]


def to_openai_messages(system: str | None, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Anthropic-format history as chat completions messages."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
        elif message["role"] == "assistant":
            out.append(_assistant(content))
        else:
            out.extend(_user(content))
    return out


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def _assistant(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    calls = [
        {
            "id": b["id"],
            "type": "function",
            "function": {"name": b["name"], "arguments": json.dumps(b.get("input") or {})},
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _user(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool results become `tool` messages (first, as the API wants), text a user message."""
    out: list[dict[str, Any]] = [
        {
            "role": "tool",
            "tool_call_id": b["tool_use_id"],
            "content": _block_text(b.get("content", "")),
        }
        for b in blocks
        if b.get("type") == "tool_result"
    ]
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    if text:
        out.append({"role": "user", "content": text})
    return out


def _provider_error(exc: Exception) -> ProviderError:
    if isinstance(exc, openai.APIStatusError):
        status = int(exc.status_code)
        return ProviderError(
            f"HTTP {status}: {exc.message[:300]}",
            retryable=is_retryable_status(status),
            status=status,
            retry_after_s=retry_after_s(getattr(exc.response, "headers", None)),
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = "timeout" if isinstance(exc, openai.APITimeoutError) else "connection"
        return ProviderError(
            f"connection failed: {type(exc).__name__}", retryable=True, cause=cause
        )
    if isinstance(exc, openai.APIError):  # an error reported inside the stream
        err_type = exc.type or (exc.body.get("type") if isinstance(exc.body, dict) else None)
        retryable = err_type in RETRYABLE_ERROR_TYPES or err_type is None
        return ProviderError(
            f"{err_type or 'error'}: {exc.message[:300]}",
            retryable=retryable,
            error_type=str(err_type or ""),
        )
    return ProviderError(f"model stream failed: {type(exc).__name__}", retryable=True)
