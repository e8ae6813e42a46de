"""The stream's rules on the text (relay_client.text): tokens by step,
`step_retry` and `resumed` drop what they void, duplicates are skipped."""

from __future__ import annotations

import json

from relay_client.events import DoneEvent, ErrorEvent, TokenEvent, UnknownEvent
from relay_client.text import RunState


def feed(state: RunState, *messages: tuple[str, dict[str, object], str | None]) -> list[object]:
    return [state.accept(name, json.dumps(data), eid) for name, data, eid in messages]


def token(text: str, step: int, eid: str) -> tuple[str, dict[str, object], str]:
    return "token", {"text": text, "step": step}, eid


def test_tokens_make_the_text_in_step_order() -> None:
    state = RunState()
    got = feed(state, token("Hello ", 0, "1-0"), token("world", 0, "1-1"), token("!", 1, "2-0"))
    assert all(isinstance(e, TokenEvent) for e in got)
    assert state.text == "Hello world!" and state.last_event_id == "2-0"


def test_step_retry_drops_the_partial_text_of_its_step() -> None:
    state = RunState()
    feed(state, token("A ", 0, "1-0"), token("par", 1, "2-0"), token("tial", 1, "2-1"))
    feed(state, ("step_retry", {"step": 1, "reason": "overloaded", "model": "fb"}, "3-0"))
    feed(state, token("whole", 1, "4-0"))
    assert state.text == "A whole"


def test_resumed_drops_the_steps_it_sends_again() -> None:
    state = RunState()
    feed(state, token("kept ", 0, "1-0"), token("lost", 1, "2-0"), token("too", 2, "2-1"))
    feed(state, ("resumed", {"attempt": 2, "from_step": 1}, "3-0"), token("again", 1, "4-0"))
    assert state.text == "kept again"


def test_an_event_not_after_the_last_id_is_a_duplicate() -> None:
    state = RunState(last_event_id="5-1")
    assert feed(state, token("old", 0, "5-1"), token("older", 0, "4-9")) == [None, None]
    assert isinstance(feed(state, token("new", 0, "5-2"))[0], TokenEvent)
    assert state.text == "new"


def test_nothing_after_done_and_keepalives_are_skipped() -> None:
    state = RunState()
    done = feed(state, ("done", {"status": "succeeded", "cost_usd": 0.5}, "1-0"))[0]
    assert isinstance(done, DoneEvent) and state.done is done
    assert feed(state, token("late", 0, "2-0")) == [None]
    assert state.accept("", "", None) is None and state.accept("message", "", None) is None


def test_error_payload_type_and_unknown_events() -> None:
    state = RunState()
    err, unknown, bad = feed(
        state,
        ("error", {"type": "kill_switch", "message": "off", "reason": "kill_switch"}, "1-0"),
        ("shiny_new", {"x": 1}, "2-0"),
        ("token", {"text": 3}, "3-0"),  # malformed: kept as unknown, not a crash
    )
    assert isinstance(err, ErrorEvent) and err.type == "error"
    assert err.error_type == "kill_switch" and err.reason == "kill_switch"
    assert isinstance(unknown, UnknownEvent) and unknown.type == "shiny_new"
    assert isinstance(bad, UnknownEvent)


def test_after_a_resync_the_transcript_replaces_the_text() -> None:
    state = RunState()
    url = "/v1/conversations/c/messages"
    feed(state, ("resync", {"reason": "events_expired", "transcript_url": url}, None))
    feed(state, ("done", {"status": "succeeded", "cost_usd": 0.1}, None))
    assert state.needs_transcript and state.resync is not None
    state.use_transcript("the whole answer")
    assert state.text == "the whole answer" and not state.needs_transcript
