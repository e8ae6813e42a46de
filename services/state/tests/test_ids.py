"""Unknown and malformed ids answer 404 JSON, and bad data 4xx, never a 500."""

from __future__ import annotations

import httpx
import pytest

from relay_core.state_api import CheckpointIn, FinishIn

_IDS = ["run_0123456789abcdef", "nope", "bad%00id", "x" * 300, "%E2%9C%93"]


@pytest.mark.parametrize("bad_id", _IDS)
async def test_unknown_or_malformed_ids_are_404(http: httpx.AsyncClient, bad_id: str) -> None:
    calls = [
        http.get(f"/runs/{bad_id}"),
        http.get(f"/runs/{bad_id}", params={"user_id": "alice"}),
        http.post(f"/runs/{bad_id}/cancel", json={"user_id": "alice"}),
        http.post(f"/runs/{bad_id}/claim", json={"consumer": "r"}),
        http.post(
            f"/runs/{bad_id}/checkpoints",
            json=CheckpointIn(attempt=1, step=0, kind="k", payload={}).model_dump(),
        ),
        http.post(f"/runs/{bad_id}/finish", json=FinishIn(attempt=1, status="failed").model_dump()),
        http.get(f"/conversations/{bad_id}/messages", params={"user_id": "alice"}),
        http.delete(f"/keys/{bad_id}"),
    ]
    for call in calls:
        resp = await call
        assert resp.status_code == 404, (resp.request.url, resp.text)
        assert resp.json()["error"]["type"] == "not_found"


async def test_unknown_conversation_on_create_is_404(http: httpx.AsyncClient) -> None:
    body = {"user_id": "alice", "message": "hi", "model": "m", "conversation_id": "conv_x"}
    resp = await http.post("/runs", json=body)
    assert resp.status_code == 404


async def test_bad_data_is_4xx_not_500(http: httpx.AsyncClient) -> None:
    nul = await http.post("/runs", json={"user_id": "alice", "message": "a\u0000b", "model": "m"})
    assert nul.status_code == 400
    assert nul.json()["error"]["type"] == "invalid_request"
    not_json = await http.post(
        "/runs", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    missing = await http.post("/runs", json={"user_id": "alice"})
    assert missing.status_code == 422
    assert missing.json()["error"]["type"] == "invalid_request"
