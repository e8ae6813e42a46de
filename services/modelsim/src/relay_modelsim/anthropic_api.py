"""`POST /v1/messages`: the Anthropic Messages API, streaming and not.

The stream is the sequence the official SDK needs, each event with an `event:`
line: message_start (usage with input and output tokens), ping,
content_block_start / content_block_delta / content_block_stop per block
(`text_delta` for text, `input_json_delta` for tool input), message_delta
(stop_reason and usage.output_tokens), message_stop. A mid-stream failure is
an `event: error`, which the SDK raises as `APIStatusError`.

Tool-use ids are `toolu_` plus a key derived from the request, so a replayed
request gets the same ids; message ids are random, as a real provider's are.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay_modelsim.directives import FailSpec, describe_errors
from relay_modelsim.engine import RequestError, bearer_token, fail_message, handle, sim_state
from relay_modelsim.replies import (
    Reply,
    ToolResult,
    ToolUse,
    Transcript,
    Turn,
    count_input_tokens,
    seed_of,
)
from relay_modelsim.streaming import Chunk

__all__ = ["AnthropicDialect", "messages"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[_Message] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stream: bool = False


def _block_text(content: Any) -> str:
    """The text of a string or of a list of blocks (its `text` blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [b.get("text", "") for b in content if isinstance(b, dict)]
        return "\n".join(t for t in texts if isinstance(t, str))
    return ""


def _turn(message: _Message, texts: list[str]) -> Turn:
    """One message as a neutral turn; collects every input text into `texts`."""
    if isinstance(message.content, str):
        texts.append(message.content)
        return Turn(role=message.role, text=message.content)
    parts: list[str] = []
    uses: list[ToolUse] = []
    results: list[ToolResult] = []
    for block in message.content:
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif kind == "tool_use":
            uses.append(ToolUse(call_id=str(block.get("id", "")), name=str(block.get("name", ""))))
            texts.append(json.dumps(block.get("input", {})))
        elif kind == "tool_result":
            content = _block_text(block.get("content", ""))
            results.append(ToolResult(call_id=str(block.get("tool_use_id", "")), content=content))
            texts.append(content)
    texts.extend(parts)
    return Turn(
        role=message.role, text="\n".join(parts), tool_uses=tuple(uses), tool_results=tuple(results)
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class AnthropicDialect:
    """The Anthropic wire format for `engine.handle`."""

    def api_key(self, request: Request) -> str | None:
        return request.headers.get("x-api-key") or bearer_token(request)

    def error(self, status: int, type_: str, message: str) -> JSONResponse:
        body = {"type": "error", "error": {"type": type_, "message": message}}
        return JSONResponse(body, status_code=status)

    def parse(self, body: dict[str, Any]) -> Transcript:
        try:
            req = _Request.model_validate(body)
        except ValidationError as exc:
            raise RequestError(describe_errors(exc)) from exc
        texts = [_block_text(req.system)] if req.system else []
        turns = tuple(_turn(m, texts) for m in req.messages)
        return Transcript(
            model=req.model,
            turns=turns,
            seed=seed_of(req.model, body["messages"]),
            input_tokens=count_input_tokens(texts),
            max_tokens=req.max_tokens,
            stream=req.stream,
        )

    def render(self, transcript: Transcript, reply: Reply) -> dict[str, Any]:
        message = self._message(transcript, output_tokens=reply.output_tokens)
        if reply.tool_calls:
            message["content"] = [
                {"type": "tool_use", "id": f"toolu_{c.key}", "name": c.name, "input": c.args}
                for c in reply.tool_calls
            ]
        else:
            message["content"] = [{"type": "text", "text": reply.text}]
        message["stop_reason"] = reply.stop_reason
        return message

    def chunks(self, transcript: Transcript, reply: Reply) -> list[Chunk]:
        start = self._message(transcript, output_tokens=0)
        out = [
            Chunk(_sse("message_start", {"type": "message_start", "message": start}), head=True),
            Chunk(_sse("ping", {"type": "ping"}), head=True),
        ]
        if reply.tool_calls:
            for index, call in enumerate(reply.tool_calls):
                block = {
                    "type": "tool_use",
                    "id": f"toolu_{call.key}",
                    "name": call.name,
                    "input": {},
                }
                deltas = [{"type": "input_json_delta", "partial_json": f} for f in call.fragments]
                out += _block(index, block, deltas, first_tokens=1)
        else:
            deltas = [{"type": "text_delta", "text": t} for t in reply.text_tokens]
            out += _block(0, {"type": "text", "text": ""}, deltas, first_tokens=0)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens},
        }
        out.append(Chunk(_sse("message_delta", delta)))
        out.append(Chunk(_sse("message_stop", {"type": "message_stop"})))
        return out

    def stream_error(self, fail: FailSpec) -> bytes:
        error = {"type": fail.type, "message": fail_message(fail)}
        return _sse("error", {"type": "error", "error": error})

    @staticmethod
    def _message(transcript: Transcript, *, output_tokens: int) -> dict[str, Any]:
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": transcript.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": transcript.input_tokens, "output_tokens": output_tokens},
        }


def _block(
    index: int, block: dict[str, Any], deltas: list[dict[str, Any]], *, first_tokens: int
) -> list[Chunk]:
    """content_block_start, one delta per token, content_block_stop."""
    start = {"type": "content_block_start", "index": index, "content_block": block}
    out = [Chunk(_sse("content_block_start", start), tokens=first_tokens)]
    for delta in deltas:
        event = {"type": "content_block_delta", "index": index, "delta": delta}
        out.append(Chunk(_sse("content_block_delta", event), tokens=1))
    out.append(Chunk(_sse("content_block_stop", {"type": "content_block_stop", "index": index})))
    return out


DIALECT = AnthropicDialect()


async def messages(request: Request) -> Response:
    return await handle(request, dialect=DIALECT, state=sim_state(request))
