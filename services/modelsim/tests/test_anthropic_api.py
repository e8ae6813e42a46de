"""/v1/messages through the real anthropic SDK."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

MODEL = "sim-claude"


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


def sim_line(**directive: Any) -> str:
    return "#sim " + json.dumps(directive)


def error_body(exc: anthropic.APIStatusError) -> Any:
    return exc.body


def blocks(message: Any) -> list[Any]:
    """A reply's content blocks, untyped: the SDK's block union is wide."""
    return list(message.content)


def text_of(message: Any) -> str:
    return str(blocks(message)[0].text)


async def test_stream_text_equals_message_text(claude: anthropic.AsyncAnthropic) -> None:
    messages = user(f"hello there\n{sim_line(tokens=15)}")
    whole = await claude.messages.create(model=MODEL, max_tokens=100, messages=messages)
    async with claude.messages.stream(model=MODEL, max_tokens=100, messages=messages) as stream:
        deltas = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert whole.content[0].type == "text"
    assert "".join(deltas) == text_of(whole) == text_of(final)
    assert len(deltas) == 15 and all(d.endswith(" ") for d in deltas)
    assert whole.stop_reason == final.stop_reason == "end_turn"
    assert whole.usage.output_tokens == final.usage.output_tokens == 15
    assert whole.usage.input_tokens == final.usage.input_tokens == 5 + 10  # 5 words


async def test_reply_is_deterministic(claude: anthropic.AsyncAnthropic) -> None:
    async def text(prompt: str, model: str = MODEL) -> str:
        reply = await claude.messages.create(model=model, max_tokens=50, messages=user(prompt))
        return text_of(reply)

    first = await text("same question")
    assert await text("same question") == first
    assert await text("another question") != first
    assert await text("same question", model="sim-other") != first


async def test_defaults_without_directive(claude: anthropic.AsyncAnthropic) -> None:
    reply = await claude.messages.create(model=MODEL, max_tokens=100, messages=user("hi"))
    assert reply.usage.output_tokens == 12  # the fixture's RELAY_MODELSIM_TOKENS


async def test_max_tokens_caps_the_reply(claude: anthropic.AsyncAnthropic) -> None:
    messages = user(sim_line(tokens=20))
    async with claude.messages.stream(model=MODEL, max_tokens=5, messages=messages) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 5
    assert len(text_of(final).split()) == 5


async def test_tool_use_round_trip(claude: anthropic.AsyncAnthropic) -> None:
    directive = sim_line(tokens=3, tools=[{"name": "calculator", "args": {"expression": "2+2"}}])
    messages: list[Any] = user(f"what is 2+2?\n{directive}")
    async with claude.messages.stream(model=MODEL, max_tokens=100, messages=messages) as stream:
        call = await stream.get_final_message()
    again = await claude.messages.create(model=MODEL, max_tokens=100, messages=messages)
    assert call.stop_reason == again.stop_reason == "tool_use"
    block = blocks(call)[0]
    assert block.type == "tool_use" and block.name == "calculator"
    assert block.input == {"expression": "2+2"}
    assert block.id.startswith("toolu_") and block.id == blocks(again)[0].id

    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in call.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "4"}],
        },
    ]
    answer = await claude.messages.create(model=MODEL, max_tokens=100, messages=messages)
    assert answer.stop_reason == "end_turn"
    text = text_of(answer)
    assert text.startswith("Tool calculator returned 4. ")
    assert answer.usage.output_tokens == 4 + 3


async def test_tool_rounds(claude: anthropic.AsyncAnthropic) -> None:
    tools = [{"name": "get_time", "args": {}}, {"name": "wait", "args": {"s": 1}}]
    messages: list[Any] = user(sim_line(tools=tools, tool_rounds=2, tokens=2))
    for round_no in range(2):
        reply = await claude.messages.create(model=MODEL, max_tokens=100, messages=messages)
        assert reply.stop_reason == "tool_use", round_no
        assert [b.name for b in blocks(reply)] == ["get_time", "wait"]
        messages += [
            {"role": "assistant", "content": [b.model_dump() for b in blocks(reply)]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": b.id, "content": f"r{round_no}"}
                    for b in blocks(reply)
                ],
            },
        ]
    answer = await claude.messages.create(model=MODEL, max_tokens=100, messages=messages)
    assert answer.stop_reason == "end_turn"
    assert text_of(answer).startswith(
        "Tool get_time returned r0. Tool wait returned r0. "
        "Tool get_time returned r1. Tool wait returned r1. "
    )


async def test_tool_rounds_forever(claude: anthropic.AsyncAnthropic) -> None:
    messages: list[Any] = user(sim_line(tools=[{"name": "calculator"}], tool_rounds=-1))
    seen_ids = set()
    for _ in range(6):
        reply = await claude.messages.create(model=MODEL, max_tokens=100, messages=messages)
        assert reply.stop_reason == "tool_use"
        call = blocks(reply)[0]
        seen_ids.add(call.id)
        messages += [
            {"role": "assistant", "content": [call.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "1"}],
            },
        ]
    assert len(seen_ids) == 6


async def test_up_front_failure(claude: anthropic.AsyncAnthropic) -> None:
    messages = user(sim_line(fail={"status": 529, "type": "overloaded_error", "message": "busy"}))
    with pytest.raises(anthropic.APIStatusError) as caught:
        await claude.messages.create(model=MODEL, max_tokens=10, messages=messages)
    assert caught.value.status_code == 529
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "busy"},
    }
    with pytest.raises(anthropic.RateLimitError):
        await claude.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=user(sim_line(fail={"status": 429, "type": "rate_limit_error"})),
        )


async def test_mid_stream_failure_after_n_tokens(claude: anthropic.AsyncAnthropic) -> None:
    messages = user(sim_line(tokens=10, fail={"after_tokens": 4}))
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with claude.messages.stream(model=MODEL, max_tokens=100, messages=messages) as stream:
            async for text in stream.text_stream:
                received.append(text)
    assert len(received) == 4
    assert error_body(caught.value)["error"]["type"] == "overloaded_error"


async def test_fail_times_fails_only_the_first_requests(
    claude: anthropic.AsyncAnthropic, tag: str
) -> None:
    messages = user(sim_line(fail={"status": 503, "type": "api_error"}, fail_times=2, tag=tag))
    for _ in range(2):
        with pytest.raises(anthropic.InternalServerError):
            await claude.messages.create(model=MODEL, max_tokens=10, messages=messages)
    reply = await claude.messages.create(model=MODEL, max_tokens=10, messages=messages)
    assert reply.stop_reason in {"end_turn", "max_tokens"}


async def test_directive_in_block_content_and_tool_only_last_message(
    claude: anthropic.AsyncAnthropic,
) -> None:
    """The directive is read from the last user message that has text."""
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "context"},
                {"type": "text", "text": sim_line(tokens=2)},
            ],
        }
    ]
    reply = await claude.messages.create(model=MODEL, max_tokens=100, messages=messages)
    assert reply.usage.output_tokens == 2


async def test_wrong_key_is_401(start_sim: Any) -> None:
    keyed = start_sim(api_key="right-key")
    wrong = anthropic.AsyncAnthropic(base_url=keyed.url, api_key="wrong-key", max_retries=0)
    right = anthropic.AsyncAnthropic(base_url=keyed.url, api_key="right-key", max_retries=0)
    try:
        with pytest.raises(anthropic.AuthenticationError):
            await wrong.messages.create(model=MODEL, max_tokens=5, messages=user("hi"))
        reply = await right.messages.create(model=MODEL, max_tokens=5, messages=user("hi"))
        assert reply.content
    finally:
        await wrong.close()
        await right.close()


async def test_missing_key_is_401_and_x_api_key_works(sim: Any) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": user("hi")}
    async with httpx.AsyncClient(base_url=sim.url) as http:
        missing = await http.post("/v1/messages", json=body)
        with_header = await http.post("/v1/messages", json=body, headers={"x-api-key": "k"})
    assert missing.status_code == 401
    assert missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "authentication_error"
    assert with_header.status_code == 200


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
        (b'{"model": "m", "max_tokens": 5, "messages": []}', "messages"),
        (
            json.dumps({"model": "m", "max_tokens": 5, "messages": user("#sim {oops")}).encode(),
            "#sim",
        ),
        (
            json.dumps(
                {"model": "m", "max_tokens": 5, "messages": user(sim_line(tokns=1))}
            ).encode(),
            "tokns",
        ),
    ],
)
async def test_bad_request_is_400(sim: Any, content: bytes, fragment: str) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        response = await http.post("/v1/messages", content=content, headers={"x-api-key": "k"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]
