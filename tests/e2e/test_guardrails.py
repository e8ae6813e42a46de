"""Guardrails end to end, through HTTP only: tenancy, key revocation, rate and
concurrency limits, one active run per conversation, interactive capacity.

Keys with tiny limits are made through the admin API, as an operator would.
The capacity test runs a private stack (one interactive runner with a single
slot, a short queue timeout); everything else shares the session's stack.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from relay_devstack.harness import api, new_user, wait_for
from tests.e2e.sse import read_events

SLOW = {"tokens": 200, "token_delay_ms": 50}  # about 10 s of streaming


def sim(text: str, **directive: Any) -> str:
    return f"{text}\n#sim {json.dumps(directive)}"


def make_key(stack: Any, **limits: Any) -> dict[str, Any]:
    """A key for a fresh user, made through the admin API with these limits."""
    body = {"user_id": f"g-{uuid.uuid4().hex[:10]}", "name": "guardrails", **limits}
    with api(stack, stack.admin_key) as admin:
        resp = admin.post("/v1/admin/keys", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def chat(client: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    """POST /v1/chat/stream and read it to the end; returns the response and event types."""
    kinds: list[str] = []
    with connect_sse(client, "POST", "/v1/chat/stream", json=body) as source:
        if source.response.status_code != 200:
            source.response.read()
            return source.response, kinds
        kinds = [sse.event for sse in source.iter_sse() if sse.event]
    return source.response, kinds


def run_status(client: httpx.Client, run_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/runs/{run_id}").json())


def finished(client: httpx.Client, run_id: str) -> dict[str, Any] | None:
    run = run_status(client, run_id)
    return run if run["status"] in ("succeeded", "failed", "cancelled") else None


def test_another_users_ids_are_404_on_every_endpoint(stack: Any) -> None:
    alice_key, mallory_key = new_user(stack), new_user(stack)
    with api(stack, alice_key) as alice, api(stack, mallory_key) as mallory:
        run = alice.post("/v1/runs", json={"message": sim("mine", tokens=3)}).json()
        read_events(run["events_url"], alice_key)
        run_id, conv = run["run_id"], run["conversation_id"]

        assert mallory.get(f"/v1/runs/{run_id}").status_code == 404
        assert mallory.post(f"/v1/runs/{run_id}/cancel").status_code == 404
        assert mallory.get(f"/v1/conversations/{conv}/messages").status_code == 404
        posted = mallory.post("/v1/runs", json={"message": "in", "conversation_id": conv})
        assert posted.status_code == 404
        streamed = mallory.post("/v1/chat/stream", json={"message": "in", "conversation_id": conv})
        assert streamed.status_code == 404
        assert streamed.json()["error"]["type"] == "not_found"
        assert run_id not in {r["run_id"] for r in mallory.get("/v1/runs").json()["runs"]}
        with api(stack, mallory_key, service="events") as events:
            assert events.get(f"/v1/runs/{run_id}/events").status_code == 404
        # Still all there for their owner.
        assert alice.get(f"/v1/runs/{run_id}").status_code == 200
        assert len(alice.get(f"/v1/conversations/{conv}/messages").json()["messages"]) == 2


def test_a_revoked_key_stops_working_on_gateway_and_events(stack: Any) -> None:
    key = make_key(stack)
    with api(stack, key["api_key"]) as client:
        run = client.post("/v1/runs", json={"message": sim("hi", tokens=2)}).json()
        read_events(run["events_url"], key["api_key"])
    events_path = f"/v1/runs/{run['run_id']}/events"
    with (
        api(stack, key["api_key"]) as gateway,
        api(stack, key["api_key"], service="events") as events,
        api(stack, stack.admin_key) as admin,
    ):
        assert gateway.get("/v1/runs").status_code == 200  # cached on both services now
        assert events.get(events_path).status_code == 200
        assert admin.delete(f"/v1/admin/keys/{key['key_id']}").status_code == 204
        started = time.monotonic()
        wait_for(
            lambda: gateway.get("/v1/runs").status_code == 401,
            timeout_s=10,
            what="the gateway to refuse the revoked key",
        )
        wait_for(
            lambda: events.get(events_path).status_code == 401,
            timeout_s=10,
            what="the events service to refuse the revoked key",
        )
        assert time.monotonic() - started < 10


def test_the_rate_limit_answers_429_with_retry_after(stack: Any) -> None:
    """3 per minute: a burst of 3 passes, the 4th is refused and told to retry
    within one interval (60 s / 3), not at the end of a minute."""
    key = make_key(stack, rate_limit_per_min=3)
    with api(stack, key["api_key"]) as client:
        responses = [client.get("/v1/runs") for _ in range(4)]
    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    refused = responses[3]
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["type"] == "rate_limited"
    assert refused.json()["error"]["reason"] == "rate_limit"
    assert 1 <= int(refused.headers["retry-after"]) <= 20


def test_concurrent_runs_limit_answers_429_until_a_run_ends(stack: Any) -> None:
    key = make_key(stack, max_concurrent_runs=1)
    with api(stack, key["api_key"]) as client:
        slow = client.post("/v1/runs", json={"message": sim("slow", **SLOW)})
        assert slow.status_code == 202
        refused = client.post("/v1/runs", json={"message": "another"})
        assert refused.status_code == 429
        assert refused.json()["error"]["reason"] == "concurrent_runs"
        assert int(refused.headers["retry-after"]) >= 1
        chat_refused = client.post("/v1/chat/stream", json={"message": "and a chat"})
        assert chat_refused.status_code == 429

        client.post(f"/v1/runs/{slow.json()['run_id']}/cancel")
        wait_for(lambda: finished(client, slow.json()["run_id"]), timeout_s=15, what="cancel")
        # The runner freed the slot with its `done`: the next run is accepted.
        accepted = wait_for(
            lambda: (
                client.post("/v1/runs", json={"message": sim("next", tokens=2)}).status_code == 202
            ),
            timeout_s=10,
            what="a run to be accepted after the first ended",
        )
        assert accepted


def test_a_busy_conversation_rejects_or_enqueues(stack: Any) -> None:
    key = new_user(stack)
    with api(stack, key) as client:
        first = client.post(
            "/v1/runs", json={"message": sim("first", tokens=40, token_delay_ms=25)}
        ).json()
        conv = first["conversation_id"]
        busy = client.post("/v1/runs", json={"message": "now", "conversation_id": conv})
        assert busy.status_code == 409
        assert busy.json()["error"]["type"] == "conflict"
        assert busy.json()["error"]["reason"] == "conversation_busy"
        chat_busy = client.post("/v1/chat/stream", json={"message": "now", "conversation_id": conv})
        assert chat_busy.status_code == 409

        second = client.post(
            "/v1/runs",
            json={"message": sim("second", tokens=3), "conversation_id": conv,
                  "on_conflict": "enqueue"},
        )  # fmt: skip
        assert second.status_code == 202 and second.json()["status"] == "queued"
        done = [
            wait_for(partial(finished, client, r), timeout_s=30, what=f"{r} to finish")
            for r in (first["run_id"], second.json()["run_id"])
        ]
        assert [r["status"] for r in done] == ["succeeded", "succeeded"]
        first_end = datetime.fromisoformat(done[0]["finished_at"])
        second_start = datetime.fromisoformat(done[1]["started_at"])
        assert second_start >= first_end
        transcript = client.get(f"/v1/conversations/{conv}/messages").json()["messages"]
        assert [m["run_id"] for m in transcript] == [first["run_id"]] * 2 + [
            second.json()["run_id"]
        ] * 2


@pytest.fixture(scope="module")
def one_slot_stack(stack_factory: Any) -> Any:
    """One interactive runner with a single slot; chats wait at most 3 s for it."""
    return stack_factory(
        overrides={
            "runner-interactive": {"RELAY_RUNNER_CONCURRENCY": "1"},
            "gateway": {"RELAY_INTERACTIVE_QUEUE_TIMEOUT_S": "3"},
        }
    )


@pytest.fixture
def held_slot(one_slot_stack: Any) -> Iterator[Any]:
    """Start a chat in a thread; yields a function that starts it and waits for its first token."""
    threads: list[threading.Thread] = []

    def hold(directive: dict[str, Any]) -> None:
        first_token = threading.Event()

        def run() -> None:
            with (
                api(one_slot_stack, one_slot_stack.api_key) as client,
                connect_sse(
                    client, "POST", "/v1/chat/stream", json={"message": sim("hold", **directive)}
                ) as source,
            ):
                for sse in source.iter_sse():
                    if sse.event == "token":
                        first_token.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        assert first_token.wait(timeout=20), "the holding chat never started streaming"

    yield hold
    for thread in threads:
        thread.join(timeout=30)


def test_interactive_capacity_full_waits_then_429_or_admits(
    one_slot_stack: Any, held_slot: Any
) -> None:
    with api(one_slot_stack, new_user(one_slot_stack)) as client:
        held_slot(SLOW)  # the only slot is busy for ~10 s
        started = time.monotonic()
        refused, _ = chat(client, {"message": "me too"})
        waited = time.monotonic() - started
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["reason"] == "interactive_capacity"
        assert int(refused.headers["retry-after"]) >= 1
        assert 2.9 <= waited < 8
        health = httpx.get(one_slot_stack.management_url("gateway") + "/healthz").json()
        assert health["interactive_capacity"] == 1 and health["interactive_in_flight"] == 1

    with api(one_slot_stack, new_user(one_slot_stack)) as client:
        probes = one_slot_stack.management_url("gateway")
        wait_for(
            lambda: httpx.get(probes + "/healthz").json()["interactive_in_flight"] == 0,
            timeout_s=20,
            what="the slow chat to end and free its slot",
        )
        held_slot({"tokens": 10, "token_delay_ms": 100})  # frees the slot within ~1 s
        started = time.monotonic()
        admitted, kinds = chat(client, {"message": sim("after you", tokens=3)})
        assert admitted.status_code == 200
        assert time.monotonic() - started < 8
        assert kinds[0] == "start" and kinds[-1] == "done"
