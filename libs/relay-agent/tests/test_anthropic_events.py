"""`TurnBuilder` folds the Messages API's raw stream events into the turn the SDK's
final message held (the provider reads raw events since the CPU cut of issue 14):
text and tool_use blocks in index order, a tool's input from its JSON fragments,
other block types kept, usage and stop reason; a stream cut before
`message_stop` and an `error` event are provider errors."""

from __future__ import annotations

from typing import Any

import pytest

from relay_agent.providers.anthropic_events import TurnBuilder, stream_error
from relay_agent.providers.base import ProviderError, ToolCall

START = {"message": {"model": "claude-x", "usage": {"input_tokens": 12, "output_tokens": 1}}}


def feed_all(events: list[tuple[str, dict[str, Any]]]) -> tuple[TurnBuilder, list[str]]:
    builder, texts = TurnBuilder(), []
    for kind, data in events:
        text = builder.feed(kind, data)
        if text is not None:
            texts.append(text)
    return builder, texts


def test_text_and_a_tool_call_make_the_stored_blocks() -> None:
    builder, texts = feed_all(
        [
            ("message_start", START),
            ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
            ("content_block_stop", {"index": 0}),
            ("content_block_start", {"index": 1, "content_block": {
                "type": "tool_use", "id": "tu_1", "name": "calculator", "input": {}}}),
            ("content_block_delta", {"index": 1, "delta": {
                "type": "input_json_delta", "partial_json": '{"expression": '}}),
            ("content_block_delta", {"index": 1, "delta": {
                "type": "input_json_delta", "partial_json": '"6*7"}'}}),
            ("content_block_stop", {"index": 1}),
            ("message_delta", {"delta": {"stop_reason": "tool_use"},
                               "usage": {"output_tokens": 9}}),
            ("message_stop", {}),
        ]
    )  # fmt: skip
    turn = builder.turn()
    assert texts == ["Hel", "lo"]
    assert turn.content_blocks == [
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "tu_1", "name": "calculator", "input": {"expression": "6*7"}},
    ]
    assert turn.tool_calls == [ToolCall("tu_1", "calculator", {"expression": "6*7"})]
    assert (turn.stop_reason, turn.input_tokens, turn.output_tokens) == ("tool_use", 12, 9)
    assert turn.model == "claude-x"


def test_a_tool_call_without_input_fragments_has_an_empty_input() -> None:
    builder, _ = feed_all(
        [
            ("message_start", START),
            ("content_block_start", {"index": 0, "content_block": {
                "type": "tool_use", "id": "tu_2", "name": "get_time", "input": {}}}),
            ("content_block_stop", {"index": 0}),
            ("message_stop", {}),
        ]
    )  # fmt: skip
    assert builder.turn().tool_calls == [ToolCall("tu_2", "get_time", {})]


def test_other_block_types_are_kept_with_their_deltas() -> None:
    builder, texts = feed_all(
        [
            ("message_start", START),
            ("content_block_start", {"index": 0, "content_block": {
                "type": "thinking", "thinking": "", "signature": None}}),
            ("content_block_delta", {"index": 0, "delta": {
                "type": "thinking_delta", "thinking": "hmm"}}),
            ("content_block_delta", {"index": 0, "delta": {
                "type": "signature_delta", "signature": "sig"}}),
            ("content_block_stop", {"index": 0}),
            ("message_stop", {}),
        ]
    )  # fmt: skip
    assert texts == []
    assert builder.turn().content_blocks == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    ]


def test_a_stream_cut_before_message_stop_is_a_retryable_error() -> None:
    builder, _ = feed_all([("message_start", START)])
    with pytest.raises(ProviderError) as caught:
        builder.turn()
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("err_type", "retryable"), [("overloaded_error", True), ("invalid_request_error", False)]
)
def test_an_error_event_maps_to_a_provider_error(err_type: str, retryable: bool) -> None:
    exc = stream_error({"type": "error", "error": {"type": err_type, "message": "nope"}}, 200)
    assert (exc.retryable, exc.status, exc.error_type) == (retryable, 200, err_type)
    assert "nope" in exc.message
