"""One Anthropic Messages stream, event by event: the text deltas and the finished turn.

`AnthropicProvider` reads the stream through the SDK's lowest-level
interface (`AsyncStream.raw_events`: the server-sent events as they arrive,
before any JSON parsing), parses each event's JSON once and hands the plain
dict to `TurnBuilder`, which keeps the message being streamed and answers the
text of each text delta.

Why not the SDK's typed events: `messages.stream()` builds a pydantic-like
object for every event (`construct_type`), a second event object per delta
(`build_events`), and updates a snapshot of the whole message on every
delta (`accumulate_event`); for a 20-token turn that was most of the
runner's CPU per run spent in the SDK. The wire format is the SDK's own
contract (the event types below are exactly the ones `accumulate_event`
handles), and the SDK still builds the request, authenticates, maps error
statuses to its exceptions, owns the connection pool and traces the call.

What is kept, per content block (by `index`): a text block's text, a
tool_use block's id, name and input (from its `input_json_delta` fragments,
parsed at `content_block_stop`), and for any other block type what its
start carried plus thinking/signature/citations deltas, so the stored
content is what the SDK's final message would have held. `message_start`
gives the usage's input tokens and the model, `message_delta` the stop
reason and the (cumulative) output tokens. An `error` event mid-stream is a
`ProviderError`, retryable by its type, like the SDK's `APIStatusError` was.
"""

from __future__ import annotations

import json
from typing import Any

from relay_agent.providers.base import RETRYABLE_ERROR_TYPES, ProviderError, ToolCall, TurnDone

__all__ = ["TurnBuilder", "stream_error"]


def stream_error(data: Any, status: int) -> ProviderError:
    """The ProviderError of an `error` event that arrived after the stream began."""
    err = data.get("error", data) if isinstance(data, dict) else {}
    err_type = str(err.get("type", "")) if isinstance(err, dict) else ""
    message = str(err.get("message", "")) if isinstance(err, dict) else str(data)
    return ProviderError(
        f"{err_type or 'error'} (HTTP {status}): {message[:300]}",
        retryable=err_type in RETRYABLE_ERROR_TYPES,
        status=status,
        error_type=err_type,
    )


class TurnBuilder:
    """Feed it each event (`feed`); `turn()` once the stream ended."""

    __slots__ = (
        "_blocks",
        "_json",
        "input_tokens",
        "model",
        "output_tokens",
        "stop_reason",
        "stopped",
    )

    def __init__(self) -> None:
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}  # a tool_use block's input fragments
        self.model = ""
        self.stop_reason = "end_turn"
        self.input_tokens = 0
        self.output_tokens = 0
        self.stopped = False  # message_stop seen

    def feed(self, kind: str, data: dict[str, Any]) -> str | None:
        """Take one event (its type and parsed data); the text of a text delta, else None."""
        if kind == "content_block_delta":
            delta = data["delta"]
            block = self._blocks[data["index"]]
            dtype = delta.get("type")
            if dtype == "text_delta":
                block["text"] += delta["text"]
                return str(delta["text"])
            if dtype == "input_json_delta":
                self._json.setdefault(data["index"], []).append(delta.get("partial_json", ""))
            elif dtype == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            elif dtype == "signature_delta":
                block["signature"] = delta.get("signature", "")
            elif dtype == "citations_delta":
                block.setdefault("citations", []).append(delta.get("citation"))
            return None
        if kind == "content_block_start":
            block = {k: v for k, v in data["content_block"].items() if v is not None}
            if block.get("type") == "text":
                block["text"] = block.get("text", "")
            self._blocks[data["index"]] = block
        elif kind == "content_block_stop":
            self._close_block(data["index"])
        elif kind == "message_start":
            message = data.get("message", {})
            self.model = str(message.get("model") or "")
            self._usage(message.get("usage") or {})
        elif kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                self.stop_reason = str(reason)
            self._usage(data.get("usage") or {})
        elif kind == "message_stop":
            self.stopped = True
        return None

    def _usage(self, usage: dict[str, Any]) -> None:
        if usage.get("input_tokens") is not None:
            self.input_tokens = int(usage["input_tokens"])
        if usage.get("output_tokens") is not None:
            self.output_tokens = int(usage["output_tokens"])

    def _close_block(self, index: int) -> None:
        block = self._blocks.get(index)
        fragments = self._json.pop(index, None)
        if block is None or block.get("type") != "tool_use":
            return
        raw = "".join(fragments or [])
        if raw:
            block["input"] = json.loads(raw)  # a malformed input fails the turn, as in the SDK
        block.setdefault("input", {})

    def turn(self) -> TurnDone:
        """The finished turn; a stream that ended before `message_stop` is a retryable error."""
        if not self.stopped:
            raise ProviderError("the model stream ended before message_stop", retryable=True)
        blocks = [self._stored(self._blocks[i]) for i in sorted(self._blocks)]
        return TurnDone(
            content_blocks=blocks,
            tool_calls=[
                ToolCall(b["id"], b["name"], dict(b.get("input") or {}))
                for b in blocks
                if b["type"] == "tool_use"
            ],
            stop_reason=self.stop_reason,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            model=self.model,
        )

    @staticmethod
    def _stored(block: dict[str, Any]) -> dict[str, Any]:
        """A block as the transcript stores it (what `content_blocks` made of the SDK's)."""
        if block.get("type") == "text":
            return {"type": "text", "text": block["text"]}
        if block.get("type") == "tool_use":
            return {"type": "tool_use", "id": block["id"], "name": block["name"],
                    "input": block.get("input", {})}  # fmt: skip
        return block
