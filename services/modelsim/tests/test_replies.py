"""Reply planning, without a server."""

from __future__ import annotations

from relay_modelsim.directives import Directive, ToolSpec
from relay_modelsim.replies import (
    ToolResult,
    ToolUse,
    Transcript,
    Turn,
    directive_of,
    plan_reply,
    seed_of,
    split_tokens,
)


def transcript(*turns: Turn, max_tokens: int | None = None) -> Transcript:
    return Transcript(
        model="m",
        turns=turns,
        seed=seed_of("m", [repr(t) for t in turns]),
        input_tokens=10,
        max_tokens=max_tokens,
        stream=False,
    )


def test_split_tokens_is_lossless() -> None:
    text = "Tool x returned  a\nb. "
    assert "".join(split_tokens(text)) == text
    assert split_tokens("a b ") == ["a ", "b "]


def test_text_reply_is_deterministic_and_sized() -> None:
    t = transcript(Turn(role="user", text="hi"))
    reply = plan_reply(transcript=t, directive=Directive(tokens=5), default_tokens=30)
    assert reply == plan_reply(transcript=t, directive=Directive(tokens=5), default_tokens=30)
    assert reply.output_tokens == 5 and reply.stop_reason == "end_turn"
    assert plan_reply(transcript=t, directive=Directive(), default_tokens=3).output_tokens == 3


def test_directive_from_last_user_turn_with_text() -> None:
    t = transcript(
        Turn(role="user", text='#sim {"tokens": 4}'),
        Turn(role="assistant", tool_uses=(ToolUse("c1", "calc"),)),
        Turn(role="user", tool_results=(ToolResult("c1", "4"),)),
    )
    assert directive_of(t) == Directive(tokens=4)


def test_tool_rounds_then_answer_quotes_results() -> None:
    directive = Directive(tools=[ToolSpec(name="calc", args={"e": "1+1"})], tool_rounds=2, tokens=1)
    turns: list[Turn] = [Turn(role="user", text="go")]
    for round_no in range(2):
        reply = plan_reply(transcript=transcript(*turns), directive=directive, default_tokens=0)
        assert reply.stop_reason == "tool_use" and reply.tool_calls[0].args_json == '{"e": "1+1"}'
        key = reply.tool_calls[0].key
        turns += [
            Turn(role="assistant", tool_uses=(ToolUse(key, "calc"),)),
            Turn(role="user", tool_results=(ToolResult(key, str(round_no)),)),
        ]
    answer = plan_reply(transcript=transcript(*turns), directive=directive, default_tokens=0)
    assert answer.text.startswith("Tool calc returned 0. Tool calc returned 1. ")
    assert answer.output_tokens == 8 + 1


def test_max_tokens_truncates() -> None:
    t = transcript(Turn(role="user", text="hi"), max_tokens=2)
    reply = plan_reply(transcript=t, directive=Directive(tokens=5), default_tokens=0)
    assert reply.stop_reason == "max_tokens" and reply.output_tokens == 2
