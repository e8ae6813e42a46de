"""Restart the whole stack on the same data: finished runs replay, conversations survive."""

from __future__ import annotations

import httpx

from relay_devstack.harness import discard, stack_data_dir, start_test_stack
from tests.e2e.sse import read_events, token_text


def test_restart_keeps_events_and_conversations() -> None:
    data_dir = stack_data_dir("relay-restart-")
    stack = start_test_stack(data_dir=data_dir)
    try:
        key = stack.api_key
        headers = {"Authorization": f"Bearer {key}"}
        run = httpx.post(
            f"{stack.gateway_url}/v1/runs",
            json={"message": 'remember me\n#sim {"tokens": 12}'},
            headers=headers,
        ).json()
        before = read_events(run["events_url"], key)
        transcript_before = httpx.get(
            f"{stack.gateway_url}/v1/conversations/{run['conversation_id']}/messages",
            headers=headers,
        ).json()
    finally:
        stack.stop()
    assert before[-1].event == "done"

    again = start_test_stack(data_dir=data_dir, internal_token=stack.config.internal_token)
    try:
        assert again.api_key == key, "the dev key must survive a restart"
        events_url = f"{again.events_url}/v1/runs/{run['run_id']}/events"
        after = read_events(events_url, key)
        transcript_after = httpx.get(
            f"{again.gateway_url}/v1/conversations/{run['conversation_id']}/messages",
            headers=headers,
        ).json()
        status = httpx.get(f"{again.gateway_url}/v1/runs/{run['run_id']}", headers=headers).json()
    finally:
        discard(again)  # the data folder too

    assert [(e.id, e.event, e.data) for e in after] == [(e.id, e.event, e.data) for e in before]
    assert token_text(after) == token_text(before)
    assert transcript_after == transcript_before
    assert status["status"] == "succeeded"
