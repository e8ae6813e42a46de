"""Background runs end to end, through HTTP only, as a client would."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tests.e2e.sse import read_events, token_text


def sim(**directive: Any) -> str:
    return "#sim " + json.dumps(directive)


def submit(client: httpx.Client, message: str, **body: Any) -> dict[str, Any]:
    resp = client.post("/v1/runs", json={"message": message, **body})
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def assistant_text(messages: list[dict[str, Any]], run_id: str) -> str:
    parts = []
    for m in messages:
        if m["role"] == "assistant" and m.get("run_id") == run_id:
            parts += [b["text"] for b in m["content"] if b.get("type") == "text"]
    return "".join(parts)


def test_submit_stream_done_and_transcript_matches(
    user_client: httpx.Client, user_key: str
) -> None:
    run = submit(user_client, f"Tell me a story.\n{sim(tokens=25, tag=uuid.uuid4().hex)}")
    assert run["status"] == "queued" and run["events_url"].endswith(
        f"/v1/runs/{run['run_id']}/events"
    )

    events = read_events(run["events_url"], user_key)
    kinds = [e.event for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[-1].data["status"] == "succeeded"
    assert kinds.count("token") == 25

    status = user_client.get(f"/v1/runs/{run['run_id']}").json()
    assert status["status"] == "succeeded" and status["attempts"] == 1
    assert status["finished_at"] is not None

    transcript = user_client.get(f"/v1/conversations/{run['conversation_id']}/messages").json()
    roles = [m["role"] for m in transcript["messages"]]
    assert roles[0] == "user" and roles[-1] == "assistant"
    assert assistant_text(transcript["messages"], run["run_id"]) == token_text(events)


def test_tool_call_emits_tool_events_and_answer_uses_result(
    user_client: httpx.Client, user_key: str
) -> None:
    directive = sim(tools=[{"name": "calculator", "args": {"expression": "6*7"}}], tokens=5)
    run = submit(user_client, f"What is six times seven?\n{directive}")
    events = read_events(run["events_url"], user_key)

    starts = [e for e in events if e.event == "tool_start"]
    ends = [e for e in events if e.event == "tool_end"]
    assert [s.data["name"] for s in starts] == ["calculator"]
    assert starts[0].data["args"] == {"expression": "6*7"}
    assert ends[0].data["ok"] is True and ends[0].data["call_id"] == starts[0].data["call_id"]
    assert "42" in token_text(events)
    assert events[-1].event == "done" and events[-1].data["status"] == "succeeded"


def test_second_turn_sees_the_history(user_client: httpx.Client, user_key: str) -> None:
    first = submit(user_client, f"My name is Ada.\n{sim(tokens=3)}")
    read_events(first["events_url"], user_key)
    second = submit(
        user_client, f"What is my name?\n{sim(tokens=3)}", conversation_id=first["conversation_id"]
    )
    assert second["conversation_id"] == first["conversation_id"]
    read_events(second["events_url"], user_key)

    messages = user_client.get(f"/v1/conversations/{first['conversation_id']}/messages").json()[
        "messages"
    ]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert [m["run_id"] for m in messages] == [first["run_id"]] * 2 + [second["run_id"]] * 2


def test_idempotent_submission_returns_the_same_run(user_client: httpx.Client) -> None:
    key = uuid.uuid4().hex
    body = {"message": f"once\n{sim(tokens=2)}"}
    a = user_client.post("/v1/runs", json=body, headers={"Idempotency-Key": key})
    b = user_client.post("/v1/runs", json=body, headers={"Idempotency-Key": key})
    assert a.status_code == b.status_code == 202
    assert a.json()["run_id"] == b.json()["run_id"]
    listed = user_client.get("/v1/runs", params={"limit": 100}).json()["runs"]
    assert [r["run_id"] for r in listed].count(a.json()["run_id"]) == 1
