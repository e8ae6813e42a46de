"""`/v1/runs` on the real gateway against the real state service, Redis and Postgres."""

from __future__ import annotations

import uuid
from typing import Any

from relay_core import keys, partitions

JSON = {"content-type": "application/json"}


async def queued_run_ids(redis: Any, pool: str = "background") -> set[str]:
    """Every run on the pool's queue: all its partitions' streams."""
    found: set[str] = set()
    for partition in range(partitions.count()):
        entries = await redis.xrange(keys.queue(pool, partition))
        found |= {fields.get("run_id") for _, fields in entries}
    return found


async def test_submit_is_202_and_the_run_is_queued(gateway: Any, new_user: Any, redis: Any) -> None:
    alice = await new_user()
    resp = await gateway.post("/v1/runs", json={"message": "hello"}, headers=alice.auth)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert set(body) == {"run_id", "status", "conversation_id", "events_url"}
    assert body["status"] == "queued"
    assert body["events_url"] == f"/v1/runs/{body['run_id']}/events"
    assert "idempotent-replayed" not in resp.headers
    assert body["run_id"] in await queued_run_ids(redis)


async def test_events_url_uses_the_configured_events_host(
    make_gateway: Any, state_service: Any, new_user: Any
) -> None:
    alice = await new_user()
    async with make_gateway(state_service.url, events_public_url="http://127.0.0.1:8081/") as gw:
        resp = await gw.post("/v1/runs", json={"message": "hi"}, headers=alice.auth)
    run_id = resp.json()["run_id"]
    assert resp.json()["events_url"] == f"http://127.0.0.1:8081/v1/runs/{run_id}/events"


async def test_idempotent_replay_returns_the_same_run(
    gateway: Any, new_user: Any, redis: Any
) -> None:
    alice = await new_user()
    headers = {**alice.auth, "Idempotency-Key": f"idem-{uuid.uuid4().hex}"}
    first = await gateway.post("/v1/runs", json={"message": "once"}, headers=headers)
    again = await gateway.post("/v1/runs", json={"message": "once"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    run_id = first.json()["run_id"]
    queued = [f for _, f in await redis.xrange(keys.run_queue("background", run_id))]
    assert sum(1 for f in queued if f.get("run_id") == first.json()["run_id"]) == 1


async def test_conflicting_replay_is_409(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    headers = {**alice.auth, "Idempotency-Key": "same-key"}
    first = await gateway.post("/v1/runs", json={"message": "one"}, headers=headers)
    assert first.status_code == 202
    other = await gateway.post("/v1/runs", json={"message": "two"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["type"] == "conflict"


async def test_idempotency_keys_belong_to_their_user(gateway: Any, new_user: Any) -> None:
    alice, bob = await new_user(), await new_user()
    key = {"Idempotency-Key": "shared-key"}
    a = await gateway.post("/v1/runs", json={"message": "x"}, headers={**alice.auth, **key})
    b = await gateway.post("/v1/runs", json={"message": "x"}, headers={**bob.auth, **key})
    assert a.status_code == b.status_code == 202
    assert a.json()["run_id"] != b.json()["run_id"]
    assert "idempotent-replayed" not in b.headers


async def test_overlong_idempotency_key_is_422(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    headers = {**alice.auth, "Idempotency-Key": "k" * 201}
    resp = await gateway.post("/v1/runs", json={"message": "x"}, headers=headers)
    assert resp.status_code == 422


async def test_get_own_run(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    run = (await gateway.post("/v1/runs", json={"message": "hi"}, headers=alice.auth)).json()
    resp = await gateway.get(f"/v1/runs/{run['run_id']}", headers=alice.auth)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {
        "run_id", "status", "conversation_id", "created_at", "started_at",
        "finished_at", "attempts", "cost_usd", "error", "events_url", "transcript_url",
        "trace_id",
    }  # fmt: skip
    assert body["trace_id"] is None  # tracing is off here (tests/e2e/test_tracing.py: on)
    assert body["run_id"] == run["run_id"]
    assert body["conversation_id"] == run["conversation_id"]
    assert body["status"] == "queued" and body["attempts"] == 0
    assert body["events_url"] == run["events_url"] == f"/v1/runs/{run['run_id']}/events"
    transcript = await gateway.get(body["transcript_url"], headers=alice.auth)
    assert transcript.status_code == 200
    assert transcript.json()["conversation_id"] == run["conversation_id"]


async def test_another_users_run_is_404_everywhere(gateway: Any, new_user: Any) -> None:
    alice, mallory = await new_user(), await new_user()
    run = (await gateway.post("/v1/runs", json={"message": "hi"}, headers=alice.auth)).json()
    got = await gateway.get(f"/v1/runs/{run['run_id']}", headers=mallory.auth)
    assert got.status_code == 404 and got.json()["error"]["type"] == "not_found"
    cancel = await gateway.post(f"/v1/runs/{run['run_id']}/cancel", headers=mallory.auth)
    assert cancel.status_code == 404
    listed = (await gateway.get("/v1/runs", headers=mallory.auth)).json()
    assert listed == {"runs": [], "next_cursor": None}
    # ...and it is still alice's, untouched
    mine = await gateway.get(f"/v1/runs/{run['run_id']}", headers=alice.auth)
    assert mine.json()["status"] == "queued"


async def test_unknown_and_malformed_run_ids_are_404(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    for run_id in ("run_doesnotexist", "a%3Fuser_id%3Dx", "x" * 300, "..%2Fkeys"):
        resp = await gateway.get(f"/v1/runs/{run_id}", headers=alice.auth)
        assert resp.status_code == 404, (run_id, resp.text)


async def test_list_is_newest_first_and_paginates(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    submitted = []
    for i in range(5):
        resp = await gateway.post("/v1/runs", json={"message": f"m{i}"}, headers=alice.auth)
        submitted.append(resp.json()["run_id"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await gateway.get("/v1/runs", params=params, headers=alice.auth)).json()
        seen += [r["run_id"] for r in page["runs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(submitted))
    assert pages == 3


async def test_list_filters_by_status(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    ids = []
    for i in range(3):
        resp = await gateway.post("/v1/runs", json={"message": f"m{i}"}, headers=alice.auth)
        ids.append(resp.json()["run_id"])
    await gateway.post(f"/v1/runs/{ids[1]}/cancel", headers=alice.auth)

    async def listed(*statuses: str) -> list[str]:
        params = [("status", s) for s in statuses]
        resp = await gateway.get("/v1/runs", params=params, headers=alice.auth)
        assert resp.status_code == 200, resp.text
        return [r["run_id"] for r in resp.json()["runs"]]

    assert await listed("cancelled") == [ids[1]]
    assert await listed("queued") == [ids[2], ids[0]]
    assert await listed("queued", "cancelled") == ids[::-1]
    assert await listed("succeeded") == []
    page = (await gateway.get("/v1/runs", headers=alice.auth)).json()["runs"]
    assert all(r["events_url"] == f"/v1/runs/{r['run_id']}/events" for r in page)
    bad = await gateway.get("/v1/runs", params={"status": "done"}, headers=alice.auth)
    assert bad.status_code == 422 and "status" in bad.text


async def test_bad_cursor_is_400_and_bad_limit_is_422(gateway: Any, new_user: Any) -> None:
    """A cursor outside the documented format (URL-safe base64) is 422 like any
    bad parameter; one in the format that no page gave (state cannot decode it) 400."""
    alice = await new_user()
    odd = await gateway.get("/v1/runs", params={"cursor": "!!not-a-cursor"}, headers=alice.auth)
    assert odd.status_code == 422, odd.text
    bad = await gateway.get("/v1/runs", params={"cursor": "bm90LWEtc2Vx"}, headers=alice.auth)
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"]["type"] == "invalid_request"
    for limit in (0, 101, "ten"):
        resp = await gateway.get("/v1/runs", params={"limit": limit}, headers=alice.auth)
        assert resp.status_code == 422, limit


async def test_cancel_a_queued_run(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    run = (await gateway.post("/v1/runs", json={"message": "hi"}, headers=alice.auth)).json()
    resp = await gateway.post(f"/v1/runs/{run['run_id']}/cancel", headers=alice.auth)
    assert resp.status_code == 202
    assert resp.json()["run_id"] == run["run_id"]
    assert resp.json()["status"] == "cancelled"  # nobody had claimed it
    again = await gateway.post(f"/v1/runs/{run['run_id']}/cancel", headers=alice.auth)
    assert again.status_code == 202 and again.json()["status"] == "cancelled"


async def test_bad_input_gets_clear_json_errors(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    h = {**alice.auth, **JSON}
    cases = [
        (b"{not json", 400, "invalid_json"),
        (b"{}", 422, "message"),
        (b'{"message": ""}', 422, "message"),
        (b'{"message": "   "}', 422, "blank"),
        (b'{"message": 42}', 422, "message"),
        (b'{"message": "hi", "max_cost_usd": 0}', 422, "max_cost_usd"),
        (b'{"message": "hi", "surprise": 1}', 422, "surprise"),
        (b'{"message": "hi", "conversation_id": "no/slashes"}', 422, "conversation_id"),
        (b"[]", 422, "body"),
    ]
    for raw, status, needle in cases:
        resp = await gateway.post("/v1/runs", content=raw, headers=h)
        assert resp.status_code == status, (raw, resp.text)
        err = resp.json()["error"]
        assert needle in f"{err['type']} {err['message']}", (raw, err)


async def test_oversized_message_is_413(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    resp = await gateway.post("/v1/runs", json={"message": "x" * 32_001}, headers=alice.auth)
    assert resp.status_code == 413
    assert "32000" in resp.json()["error"]["message"]
    ok = await gateway.post("/v1/runs", json={"message": "x" * 32_000}, headers=alice.auth)
    assert ok.status_code == 202


async def test_oversized_body_is_413(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    raw = b'{"message": "' + b"x" * 300_000 + b'"}'
    resp = await gateway.post("/v1/runs", content=raw, headers={**alice.auth, **JSON})
    assert resp.status_code == 413
    assert resp.json()["error"]["type"] == "payload_too_large"


async def test_unknown_model_is_422_listing_the_known_ones(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    resp = await gateway.post(
        "/v1/runs", json={"message": "hi", "model": "gpt-17"}, headers=alice.auth
    )
    assert resp.status_code == 422
    assert "gpt-17" in resp.json()["error"]["message"]
    assert "sim-default" in resp.json()["error"]["message"]
    ok = await gateway.post(
        "/v1/runs", json={"message": "hi", "model": "sim-fallback"}, headers=alice.auth
    )
    assert ok.status_code == 202


async def test_cost_ceiling_never_above_the_keys_limit(
    gateway: Any, new_user: Any, state_client: Any
) -> None:
    capped = await new_user(run_limit_usd=0.25)
    over = await gateway.post(
        "/v1/runs", json={"message": "hi", "max_cost_usd": 0.5}, headers=capped.auth
    )
    assert over.status_code == 422 and "0.25" in over.json()["error"]["message"]
    default = await gateway.post("/v1/runs", json={"message": "hi"}, headers=capped.auth)
    run = await state_client.get_run(default.json()["run_id"])
    assert run.max_cost_usd == 0.25  # min(default $1, key limit)


async def test_wrong_or_missing_key_is_401(gateway: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        resp = await gateway.post("/v1/runs", json={"message": "hi"}, headers=headers)
        assert resp.status_code == 401, headers
        assert resp.json()["error"]["type"] == "unauthorized"
        assert resp.headers["www-authenticate"] == "Bearer"


async def test_rate_limit_is_429_with_retry_after(gateway: Any, new_user: Any) -> None:
    alice = await new_user(rate_limit_per_min=3)
    statuses = []
    for _ in range(4):
        resp = await gateway.get("/v1/runs", headers=alice.auth)
        statuses.append(resp.status_code)
    assert statuses == [200, 200, 200, 429]
    assert 1 <= int(resp.headers["retry-after"]) <= 20  # one interval: 60 s / 3
    assert resp.json()["error"]["type"] == "rate_limited"
    other = await new_user(rate_limit_per_min=3)  # another key is not affected
    assert (await gateway.get("/v1/runs", headers=other.auth)).status_code == 200


async def test_text_postgres_cannot_store_is_422(gateway: Any, new_user: Any) -> None:
    """A NUL character or a lone surrogate is refused here, not passed on to state."""
    alice = await new_user()
    for raw in (b'{"message": "a\\u0000b"}', b'{"message": "a\\ud800b"}'):
        resp = await gateway.post("/v1/runs", content=raw, headers={**alice.auth, **JSON})
        assert resp.status_code == 422, (raw, resp.text)
        assert resp.json()["error"]["message"].startswith("message: ")
