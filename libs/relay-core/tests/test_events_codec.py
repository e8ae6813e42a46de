"""The event codec is pure: what a writer encodes, a reader decodes unchanged."""

from __future__ import annotations

import pytest

from relay_core import events


@pytest.mark.parametrize(
    "event",
    [
        events.start("r1", 2),
        events.token("héllo ", 3),
        events.tool_start("calculator", {"expression": "2+2"}, "toolu_1", 1),
        events.tool_end("calculator", "toolu_1", ok=False, error="boom"),
        events.usage(10, 20, 0.0003),
        events.error("budget", "over", reason="cost_budget_exceeded"),
        events.done("succeeded", 0.01),
    ],
)
def test_round_trip(event: events.Event) -> None:
    fields = events.encode_fields(event)
    back = events.decode_entry("1-0", fields)
    assert (back.type, back.data, back.id) == (event.type, event.data, "1-0")


def test_decode_accepts_bytes_as_redis_returns() -> None:
    back = events.decode_entry(b"5-1", {b"event": b"done", b"data": b'{"status":"failed"}'})
    assert back.terminal and back.data == {"status": "failed"} and back.id == "5-1"


def test_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        events.encode_fields(events.Event("bogus", {}))


@pytest.mark.parametrize("good", ["0-0", "1700000000000-5", "12"])
def test_parse_stream_id(good: str) -> None:
    assert events.parse_stream_id(good)[0] >= 0


@pytest.mark.parametrize("bad", ["", "abc", "1-x", "-1", "1--2"])
def test_parse_stream_id_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        events.parse_stream_id(bad)


def test_optional_fields_are_omitted_not_null() -> None:
    assert "error" not in events.tool_end("t", "c", ok=True).data
    assert "reason" not in events.error("x", "y").data
