"""Bad input gets a clear 4xx JSON error and loses nothing."""

from __future__ import annotations

import uuid

import httpx
import pytest


def assert_error(resp: httpx.Response, status: int) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["type"] and err["message"]
    assert "Traceback" not in resp.text
    return dict(err)


def test_malformed_json(user_client: httpx.Client) -> None:
    resp = user_client.post(
        "/v1/runs", content=b'{"message": ', headers={"Content-Type": "application/json"}
    )
    assert_error(resp, 400)


@pytest.mark.parametrize("body", [{}, {"message": ""}, {"message": 5}, {"msg": "hi"}])
def test_missing_or_wrong_fields(user_client: httpx.Client, body: dict[str, object]) -> None:
    assert_error(user_client.post("/v1/runs", json=body), 422)


def test_oversized_message(user_client: httpx.Client) -> None:
    assert_error(user_client.post("/v1/runs", json={"message": "x" * 40_000}), 413)


def test_oversized_body(user_client: httpx.Client) -> None:
    resp = user_client.post(
        "/v1/runs",
        content=b'{"message": "' + b"y" * 2_000_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert_error(resp, 413)


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/runs/{uuid.uuid4()}",
        "/v1/runs/not-a-uuid",
        f"/v1/conversations/{uuid.uuid4()}/messages",
        "/v1/conversations/%20/messages",
    ],
)
def test_unknown_ids(user_client: httpx.Client, path: str) -> None:
    assert_error(user_client.get(path), 404)


def test_unknown_run_events(stack_urls: dict[str, str], user_key: str) -> None:
    resp = httpx.get(
        f"{stack_urls['events']}/v1/runs/{uuid.uuid4()}/events",
        headers={"Authorization": f"Bearer {user_key}"},
    )
    assert_error(resp, 404)


@pytest.mark.parametrize("auth", [None, "Bearer nope", "Basic abc", "Bearer"])
def test_wrong_or_missing_key(stack_urls: dict[str, str], auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    for url in (f"{stack_urls['gateway']}/v1/runs", f"{stack_urls['events']}/v1/runs/x/events"):
        assert_error(httpx.get(url, headers=headers), 401)


def test_bad_cursor_and_limit(user_client: httpx.Client) -> None:
    # out of the documented format (URL-safe base64): a bad parameter; in it but
    # not a cursor the API gave: 400
    assert_error(user_client.get("/v1/runs", params={"cursor": "!!garbage!!"}), 422)
    assert_error(user_client.get("/v1/runs", params={"cursor": "bm90LWEtc2Vx"}), 400)
    assert_error(user_client.get("/v1/runs", params={"limit": 0}), 422)


def test_malformed_last_event_id(
    stack_urls: dict[str, str], user_client: httpx.Client, user_key: str
) -> None:
    run = user_client.post("/v1/runs", json={"message": 'x\n#sim {"tokens": 1}'}).json()
    resp = httpx.get(
        run["events_url"],
        headers={"Authorization": f"Bearer {user_key}", "Last-Event-ID": "not-an-id"},
    )
    assert_error(resp, 400)
