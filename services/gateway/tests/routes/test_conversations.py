"""`/v1/conversations/{id}/messages`, and conversation ids on submit, owner-scoped."""

from __future__ import annotations

from typing import Any


async def test_transcript_of_own_conversation(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    first = (await gateway.post("/v1/runs", json={"message": "one"}, headers=alice.auth)).json()
    conv = first["conversation_id"]
    # No runner here: the first run is still queued, so the second waits behind it.
    second = await gateway.post(
        "/v1/runs",
        json={"message": "two", "conversation_id": conv, "on_conflict": "enqueue"},
        headers=alice.auth,
    )
    assert second.status_code == 202 and second.json()["conversation_id"] == conv
    resp = await gateway.get(f"/v1/conversations/{conv}/messages", headers=alice.auth)
    assert resp.status_code == 200
    body = resp.json()
    assert body["conversation_id"] == conv
    users = [m for m in body["messages"] if m["role"] == "user"]
    assert [m["text"] for m in users] == ["one", "two"]
    assert users[0]["content"] == [{"type": "text", "text": "one"}]
    assert users[0]["run_id"] == first["run_id"]
    assert users[1]["run_id"] == second.json()["run_id"]


async def test_another_users_conversation_is_404(gateway: Any, new_user: Any) -> None:
    alice, mallory = await new_user(), await new_user()
    conv = (await gateway.post("/v1/runs", json={"message": "secret"}, headers=alice.auth)).json()[
        "conversation_id"
    ]
    read = await gateway.get(f"/v1/conversations/{conv}/messages", headers=mallory.auth)
    assert read.status_code == 404
    assert "secret" not in read.text
    write = await gateway.post(
        "/v1/runs", json={"message": "hijack", "conversation_id": conv}, headers=mallory.auth
    )
    assert write.status_code == 404
    assert write.json()["error"]["message"] == "conversation not found"
    mine = (await gateway.get(f"/v1/conversations/{conv}/messages", headers=alice.auth)).json()
    assert [m["text"] for m in mine["messages"]] == ["secret"]


async def test_unknown_conversation_is_404(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    for conv in ("conv_nope", "bad%20id"):
        resp = await gateway.get(f"/v1/conversations/{conv}/messages", headers=alice.auth)
        assert resp.status_code == 404, conv
