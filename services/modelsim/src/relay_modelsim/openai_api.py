"""`POST /v1/chat/completions`: OpenAI chat completions, streaming and not.

Decisions:

- Streaming follows the OpenAI spec: `data: {chunk}` lines and a final
  `data: [DONE]`. The first chunk carries the role, then one chunk per token,
  then a chunk with an empty delta and the `finish_reason`. Usage is sent only
  when `stream_options.include_usage` is true, as one extra chunk with empty
  `choices`; every earlier chunk then has `"usage": null`, as the spec says.
- Tool calls stream as deltas: the first for a call has `index`, `id`, `type`
  and the function name with empty arguments; the next carry argument
  fragments for the same `index`.
- A mid-stream failure is a `data: {"error": {...}}` line and the end of the
  stream (no `[DONE]`): the openai SDK raises it as `openai.APIError` with the
  error object as `body`, which is what a client of a real server sees when the
  server reports an error after the response has started.
- OpenAI `tool` messages are folded into one user turn per run of consecutive
  tool messages, so the planner sees the same shape as Anthropic's tool_result
  blocks.
"""

from __future__ import annotations

import json
import time
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

__all__ = ["OpenAIDialect", "chat_completions"]

FINISH_REASONS = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
DONE = b"data: [DONE]\n\n"


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


def _content_text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        texts = [p.get("text") for p in content if p.get("type") == "text"]
        return "\n".join(t for t in texts if isinstance(t, str))
    return content or ""


def _turns(messages: list[_Message], texts: list[str]) -> tuple[Turn, ...]:
    """Neutral turns; collects every input text (system included) into `texts`."""
    turns: list[Turn] = []
    for m in messages:
        text = _content_text(m.content)
        texts.append(text)
        if m.role == "tool":
            result = ToolResult(call_id=m.tool_call_id or "", content=text)
            last = turns[-1] if turns else None
            if last is not None and last.role == "user" and last.tool_results and not last.text:
                turns[-1] = Turn(role="user", tool_results=(*last.tool_results, result))
            else:
                turns.append(Turn(role="user", tool_results=(result,)))
        elif m.role == "assistant":
            uses = []
            for call in m.tool_calls or []:
                function = call.get("function") or {}
                uses.append(
                    ToolUse(call_id=str(call.get("id", "")), name=str(function.get("name")))
                )
                texts.append(str(function.get("arguments", "")))
            turns.append(Turn(role="assistant", text=text, tool_uses=tuple(uses)))
        elif m.role == "user":
            turns.append(Turn(role="user", text=text))
    return tuple(turns)


def _usage(transcript: Transcript, reply: Reply) -> dict[str, int]:
    prompt, completion = transcript.input_tokens, reply.output_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _function_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


class OpenAIDialect:
    """The OpenAI chat-completions wire format for `engine.handle`."""

    def api_key(self, request: Request) -> str | None:
        return bearer_token(request)

    def error(self, status: int, type_: str, message: str) -> JSONResponse:
        code: str | None = type_
        if type_ == "authentication_error":
            type_, code = "invalid_request_error", "invalid_api_key"
        elif type_ == "invalid_request_error":
            code = None
        body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
        return JSONResponse(body, status_code=status)

    def parse(self, body: dict[str, Any]) -> Transcript:
        try:
            req = _Request.model_validate(body)
        except ValidationError as exc:
            raise RequestError(describe_errors(exc)) from exc
        texts: list[str] = []
        turns = _turns(req.messages, texts)
        return Transcript(
            model=req.model,
            turns=turns,
            seed=seed_of(req.model, body["messages"]),
            input_tokens=count_input_tokens(texts),
            max_tokens=req.max_completion_tokens or req.max_tokens,
            stream=req.stream,
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
        )

    def render(self, transcript: Transcript, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                _function_call(f"call_{c.key}", c.name, c.args_json) for c in reply.tool_calls
            ]
        else:
            message["content"] = reply.text
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": FINISH_REASONS[reply.stop_reason],
        }
        return {
            **_envelope(transcript, "chat.completion"),
            "choices": [choice],
            "usage": _usage(transcript, reply),
        }

    def chunks(self, transcript: Transcript, reply: Reply) -> list[Chunk]:
        base = _envelope(transcript, "chat.completion.chunk")
        if transcript.include_usage:
            base["usage"] = None

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _data({**base, "choices": [choice]})

        out = [Chunk(chunk({"role": "assistant", "content": ""}), head=True)]
        for i, call in enumerate(reply.tool_calls):
            opening = {"index": i, **_function_call(f"call_{call.key}", call.name, "")}
            out.append(Chunk(chunk({"tool_calls": [opening]}), tokens=1))
            for fragment in call.fragments:
                delta = {"tool_calls": [{"index": i, "function": {"arguments": fragment}}]}
                out.append(Chunk(chunk(delta), tokens=1))
        out += [Chunk(chunk({"content": token}), tokens=1) for token in reply.text_tokens]
        out.append(Chunk(chunk({}, FINISH_REASONS[reply.stop_reason])))
        if transcript.include_usage:
            out.append(Chunk(_data({**base, "choices": [], "usage": _usage(transcript, reply)})))
        out.append(Chunk(DONE))
        return out

    def stream_error(self, fail: FailSpec) -> bytes:
        error = {"message": fail_message(fail), "type": fail.type, "param": None, "code": fail.type}
        return _data({"error": error})


def _envelope(transcript: Transcript, obj: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": obj,
        "created": int(time.time()),
        "model": transcript.model,
        "system_fingerprint": "modelsim",
    }


def _data(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


DIALECT = OpenAIDialect()


async def chat_completions(request: Request) -> Response:
    return await handle(request, dialect=DIALECT, state=sim_state(request))
