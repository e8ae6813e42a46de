"""Drop the stream after 5 events, resume with the last id: every event exactly once."""

from __future__ import annotations

import json

import httpx

from tests.e2e.sse import read_events


def test_resume_after_drop_gives_every_event_exactly_once(
    user_client: httpx.Client, user_key: str
) -> None:
    directive = json.dumps({"tokens": 40, "token_delay_ms": 20})
    run = user_client.post("/v1/runs", json={"message": f"long one\n#sim {directive}"}).json()

    first = read_events(run["events_url"], user_key, stop_after=5)
    assert len(first) == 5
    rest = read_events(run["events_url"], user_key, last_event_id=first[-1].id)
    assert rest and rest[-1].event == "done"

    union = first + rest
    ids = [e.id for e in union]
    assert len(ids) == len(set(ids)), "duplicate event ids across the reconnect"

    full = read_events(run["events_url"], user_key)  # a replay of the finished run
    assert [(e.id, e.event, e.data) for e in full] == [(e.id, e.event, e.data) for e in union]


def test_resume_with_query_parameter(user_client: httpx.Client, user_key: str) -> None:
    run = user_client.post("/v1/runs", json={"message": 'q\n#sim {"tokens": 6}'}).json()
    full = read_events(run["events_url"], user_key)
    middle = full[3].id
    rest = read_events(f"{run['events_url']}?last_event_id={middle}", user_key)
    assert [e.id for e in rest] == [e.id for e in full[4:]]
