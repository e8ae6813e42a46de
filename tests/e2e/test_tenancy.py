"""Two users: neither can read the other's runs, events or conversations."""

from __future__ import annotations

import httpx

from tests.e2e.sse import read_events


def test_users_cannot_see_each_other(
    user_client: httpx.Client, user_key: str, other_client: httpx.Client, other_key: str
) -> None:
    run = user_client.post("/v1/runs", json={"message": 'mine\n#sim {"tokens": 3}'}).json()
    read_events(run["events_url"], user_key)  # finished, so nothing is pending

    for path in (
        f"/v1/runs/{run['run_id']}",
        f"/v1/conversations/{run['conversation_id']}/messages",
    ):
        resp = other_client.get(path)
        assert resp.status_code == 404, path
        assert resp.json()["error"]["type"] == "not_found"
    assert other_client.post(f"/v1/runs/{run['run_id']}/cancel").status_code == 404

    events = httpx.get(run["events_url"], headers={"Authorization": f"Bearer {other_key}"})
    assert events.status_code == 404

    posted = other_client.post(
        "/v1/runs", json={"message": "into yours", "conversation_id": run["conversation_id"]}
    )
    assert posted.status_code == 404

    theirs = other_client.get("/v1/runs", params={"limit": 100}).json()["runs"]
    assert run["run_id"] not in {r["run_id"] for r in theirs}
    assert user_client.get(f"/v1/runs/{run['run_id']}").status_code == 200
