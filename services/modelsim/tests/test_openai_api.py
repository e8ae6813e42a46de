"""/v1/chat/completions through the real openai SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

MODEL = "sim-gpt"

CALCULATOR: Any = {
    "type": "function",
    "function": {
        "name": "calculator",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


def sim_line(**directive: Any) -> str:
    return "#sim " + json.dumps(directive)


def error_body(exc: openai.APIError) -> Any:
    return exc.body


async def collect(client: openai.AsyncOpenAI, **kwargs: Any) -> tuple[list[Any], str]:
    """Stream a completion; return the chunks and the concatenated text."""
    stream = await client.chat.completions.create(model=MODEL, stream=True, **kwargs)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


async def test_stream_text_equals_completion_text(oai: openai.AsyncOpenAI) -> None:
    messages = [{"role": "system", "content": "be brief"}, *user(f"hi\n{sim_line(tokens=9)}")]
    whole = await oai.chat.completions.create(model=MODEL, messages=messages)
    chunks, text = await collect(oai, messages=messages)
    assert text == whole.choices[0].message.content
    assert len(text.split()) == 9
    assert whole.choices[0].finish_reason == "stop"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # no include_usage, no usage
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 9
    assert whole.usage.prompt_tokens == 2 + 4 + 10


async def test_include_usage_adds_a_final_usage_chunk(oai: openai.AsyncOpenAI) -> None:
    chunks, text = await collect(
        oai, messages=user(sim_line(tokens=6)), stream_options={"include_usage": True}
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 6
    assert last.usage.total_tokens == last.usage.prompt_tokens + 6
    assert all(c.usage is None for c in chunks[:-1])
    assert len(text.split()) == 6


async def test_max_tokens_gives_length(oai: openai.AsyncOpenAI) -> None:
    whole = await oai.chat.completions.create(
        model=MODEL,
        messages=user(sim_line(tokens=20)),
        max_tokens=3,
    )
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 3


def assemble_tool_calls(chunks: list[Any]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    return calls


async def test_tool_call_round_trip(oai: openai.AsyncOpenAI) -> None:
    tools = [
        {"name": "calculator", "args": {"expression": "6*7"}},
        {"name": "get_time", "args": {}},
    ]
    messages: list[Any] = user(f"compute\n{sim_line(tools=tools, tokens=2)}")
    whole = await oai.chat.completions.create(model=MODEL, messages=messages, tools=[CALCULATOR])
    chunks, _ = await collect(oai, messages=messages, tools=[CALCULATOR])
    assert whole.choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    calls: Any = whole.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 2
    streamed = assemble_tool_calls(chunks)
    for i, call in enumerate(calls):
        assert call.id.startswith("call_") and call.id == streamed[i]["id"]
        assert call.function.name == streamed[i]["name"] == tools[i]["name"]
        assert (
            json.loads(call.function.arguments)
            == json.loads(streamed[i]["arguments"])
            == tools[i]["args"]
        )

    messages.append(whole.choices[0].message.model_dump(exclude_none=True))
    messages += [
        {"role": "tool", "tool_call_id": calls[0].id, "content": "42"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "noon"},
    ]
    answer = await oai.chat.completions.create(model=MODEL, messages=messages)
    assert answer.choices[0].finish_reason == "stop"
    text = answer.choices[0].message.content or ""
    assert text.startswith("Tool calculator returned 42. Tool get_time returned noon. ")
    assert len(text.split()) == 8 + 2


async def test_up_front_failure(oai: openai.AsyncOpenAI) -> None:
    messages = user(sim_line(fail={"status": 529, "type": "overloaded_error"}))
    with pytest.raises(openai.APIStatusError) as caught:
        await oai.chat.completions.create(model=MODEL, messages=messages)
    assert caught.value.status_code == 529
    assert error_body(caught.value)["type"] == "overloaded_error"
    with pytest.raises(openai.RateLimitError):
        await oai.chat.completions.create(
            model=MODEL,
            messages=user(sim_line(fail={"status": 429, "type": "rate_limit_error"})),
            stream=True,
        )


async def test_mid_stream_failure_after_n_tokens(oai: openai.AsyncOpenAI) -> None:
    messages = user(sim_line(tokens=10, fail={"after_tokens": 3, "message": "gone"}))
    received: list[str] = []
    stream = await oai.chat.completions.create(model=MODEL, messages=messages, stream=True)
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert len(received) == 3
    assert caught.value.message == "gone"
    assert error_body(caught.value)["type"] == "overloaded_error"


async def test_content_parts_and_tool_only_last_message(oai: openai.AsyncOpenAI) -> None:
    """Content parts are read; the directive comes from the last user message with text."""
    messages: list[Any] = [
        {
            "role": "user",
            "content": [{"type": "text", "text": sim_line(tokens=4, tools=[{"name": "get_time"}])}],
        }
    ]
    first = await oai.chat.completions.create(model=MODEL, messages=messages)
    calls = first.choices[0].message.tool_calls or []
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": calls[0].id,
            "content": [{"type": "text", "text": "09:00"}],
        },
    ]
    answer = await oai.chat.completions.create(model=MODEL, messages=messages)
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 4 + 4


async def test_missing_or_wrong_key_is_401(sim: Any, start_sim: Any) -> None:
    body = {"model": MODEL, "messages": user("hi")}
    async with httpx.AsyncClient(base_url=sim.url) as http:
        missing = await http.post("/v1/chat/completions", json=body)
        x_api_key_only = await http.post(
            "/v1/chat/completions", json=body, headers={"x-api-key": "k"}
        )
    assert missing.status_code == x_api_key_only.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    keyed = start_sim(api_key="right-key")
    client = openai.AsyncOpenAI(base_url=f"{keyed.url}/v1", api_key="wrong", max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model=MODEL, messages=user("hi"))
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}', "role"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "#sim [1]"}]}', "#sim"),
    ],
)
async def test_bad_request_is_400(sim: Any, content: bytes, fragment: str) -> None:
    headers = {"authorization": "Bearer k"}
    async with httpx.AsyncClient(base_url=sim.url) as http:
        response = await http.post("/v1/chat/completions", content=content, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]
