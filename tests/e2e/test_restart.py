"""Restart the whole stack on the same data: finished runs replay, conversations survive."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx

from relay_devstack.stack import Stack, StackConfig
from tests.e2e.sse import read_events, token_text


def test_restart_keeps_events_and_conversations() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="relay-restart-"))
    os.chmod(data_dir, 0o755)  # noqa: S103 - Postgres runs as nobody when we are root
    config = StackConfig.for_tests(data_dir)
    with Stack(config) as stack:
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
    assert before[-1].event == "done"

    with Stack(StackConfig.for_tests(data_dir, internal_token=config.internal_token)) as again:
        assert again.api_key == key, "the dev key must survive a restart"
        events_url = f"{again.events_url}/v1/runs/{run['run_id']}/events"
        after = read_events(events_url, key)
        transcript_after = httpx.get(
            f"{again.gateway_url}/v1/conversations/{run['conversation_id']}/messages",
            headers=headers,
        ).json()
        status = httpx.get(f"{again.gateway_url}/v1/runs/{run['run_id']}", headers=headers).json()

    assert [(e.id, e.event, e.data) for e in after] == [(e.id, e.event, e.data) for e in before]
    assert token_text(after) == token_text(before)
    assert transcript_after == transcript_before
    assert status["status"] == "succeeded"
