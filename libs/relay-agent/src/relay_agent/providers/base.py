"""The provider interface the agent loop drives: one streamed model turn.

Why this shape: the loop needs text as it arrives (to stream tokens and to
check for cancellation between batches) and, at the end, the whole assistant
message in Anthropic's block format (the format the transcript is stored in),
the tool calls it asks for and the usage that is billed. A provider is an
async generator of `TextDelta`s ending with one `TurnDone`; closing the
generator early (cancellation, `aclose()`) must close the upstream HTTP
stream, so nobody pays for tokens nobody reads.

Errors surface as `ProviderError`, whose `retryable` tells the loop whether
the same step may be tried again (on a fallback model): overload, rate limits,
5xx and connection failures are; bad requests and auth failures are not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from relay_core.models import ModelSpec

__all__ = [
    "RETRYABLE_ERROR_TYPES",
    "Provider",
    "ProviderError",
    "TextDelta",
    "ToolCall",
    "TurnDone",
    "TurnEvent",
    "call_outcome",
    "is_retryable_status",
]

# Error types (Anthropic's and OpenAI's names) that a later try may not hit.
RETRYABLE_ERROR_TYPES = frozenset(
    {"overloaded_error", "rate_limit_error", "api_error", "server_error", "timeout_error"}
)


def is_retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


class ProviderError(Exception):
    """A failed model turn; `status` is the HTTP status (0: no response).

    `cause` is "timeout" or "connection" when no answer came, and `error_type`
    the provider's own error type when it sent one (`overloaded_error`,
    `rate_limit_error`, ...); `call_outcome` reads them."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int = 0,
        retry_after_s: float | None = None,
        cause: str = "",
        error_type: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s  # the provider's Retry-After, when it sent one
        self.cause = cause
        self.error_type = error_type


def call_outcome(exc: ProviderError | None) -> str:
    """A model call's status class, for metrics and spans: `2xx` (it answered),
    `429` (throttled: the first thing to watch when a provider pushes back),
    `4xx`, `5xx` (an error event in the stream counts as the provider's fault),
    `timeout` or `connection` (no answer)."""
    if exc is None:
        return "2xx"
    if exc.cause in ("timeout", "connection"):
        return exc.cause
    if exc.status == 429 or exc.error_type == "rate_limit_error":
        return "429"
    if 400 <= exc.status < 500:
        return "4xx"
    return "5xx"


MAX_RETRY_AFTER_S = 30.0


def retry_after_s(headers: Any) -> float | None:
    """A `Retry-After` in seconds (capped), or None when absent or not a number.

    The HTTP-date form is not honoured: providers send seconds, and a wrong
    clock must not park a run for hours."""
    try:
        value = headers.get("retry-after") if headers is not None else None
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    if seconds is None or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


class ToolCall(NamedTuple):
    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TurnDone:
    """The finished turn: the assistant message content and what it cost in tokens."""

    content_blocks: list[dict[str, Any]]
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_reason: str = "end_turn"
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""  # the model that answered, as the provider names it ("" if not said)


TurnEvent = TextDelta | TurnDone


class Provider(Protocol):
    def stream_turn(
        self,
        *,
        spec: ModelSpec,
        system: str | None,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        max_tokens: int,
    ) -> AsyncIterator[TurnEvent]:
        """Stream one assistant turn. `tools` are Anthropic-format tool schemas."""
        ...

    async def aclose(self) -> None: ...
