"""Runs: create, idempotent replay, ownership, the queue entry, pagination, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from redis.asyncio import Redis

from relay_core import events
from relay_core import keys as redis_keys
from relay_core.redis import stream_entries
from relay_core.state_api import CreateRunIn
from relay_core.state_client import Conflict, NotFound, StateClient, StateError

NewRun = Callable[..., CreateRunIn]


async def test_create_run_records_it_queued_with_its_user_message(
    client: StateClient, new_run: NewRun
) -> None:
    run, created = await client.create_run(new_run(message="What is 2+2?", max_cost_usd=0.5))
    assert created
    assert run.status == "queued"
    assert run.attempts == 0
    assert run.max_cost_usd == 0.5
    assert run.run_id.startswith("run_")
    got = await client.get_run(run.run_id, user_id="alice")
    assert got == run
    transcript = await client.messages(run.conversation_id, user_id="alice")
    assert [(m.role, m.content, m.run_id) for m in transcript.messages] == [
        ("user", [{"type": "text", "text": "What is 2+2?"}], run.run_id)
    ]


async def test_idempotent_replay_returns_the_same_run_and_a_different_body_conflicts(
    client: StateClient, http: httpx.AsyncClient, new_run: NewRun
) -> None:
    first, created = await client.create_run(new_run(idempotency_key="k-1"))
    again, created_again = await client.create_run(new_run(idempotency_key="k-1"))
    assert created and not created_again
    assert again.run_id == first.run_id
    raw = await http.post("/runs", json=new_run(idempotency_key="k-1").model_dump())
    assert raw.status_code == 200

    with pytest.raises(Conflict) as err:
        await client.create_run(new_run(message="something else", idempotency_key="k-1"))
    assert err.value.body["error"]["type"] == "idempotency_conflict"
    # The key is per user: another user may use it.
    other, created_other = await client.create_run(new_run(user_id="bob", idempotency_key="k-1"))
    assert created_other and other.run_id != first.run_id


async def test_find_replay_answers_what_a_retry_would_get_and_creates_nothing(
    client: StateClient, http: httpx.AsyncClient, new_run: NewRun
) -> None:
    assert await client.find_replay(new_run(idempotency_key="k-find")) is None
    first, _ = await client.create_run(new_run(idempotency_key="k-find"))
    found = await client.find_replay(new_run(idempotency_key="k-find"))
    assert found == first
    # A key used for a different request: the 409 a creation answers.
    with pytest.raises(Conflict) as err:
        await client.find_replay(new_run(message="something else", idempotency_key="k-find"))
    assert err.value.body["error"]["type"] == "idempotency_conflict"
    # Owner-scoped: another user's key of the same name is not theirs.
    assert await client.find_replay(new_run(user_id="bob", idempotency_key="k-find")) is None
    # Nothing was created by the lookups, and a key is required.
    page = await client.list_runs(user_id="alice")
    assert [r.run_id for r in page.runs] == [first.run_id]
    assert (await client.list_runs(user_id="bob")).runs == []
    raw = await http.post("/runs/replay", json=new_run().model_dump())
    assert raw.status_code == 422


async def test_another_users_run_and_conversation_are_404(
    client: StateClient, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run())
    with pytest.raises(NotFound):
        await client.get_run(run.run_id, user_id="bob")
    with pytest.raises(NotFound):
        await client.messages(run.conversation_id, user_id="bob")
    with pytest.raises(NotFound):
        await client.create_run(new_run(user_id="bob", conversation_id=run.conversation_id))
    with pytest.raises(NotFound):
        await client.cancel_run(run.run_id, user_id="bob")
    # Internal callers (the runner) read it without a user.
    assert (await client.get_run(run.run_id)).run_id == run.run_id


async def test_second_run_joins_the_conversation(client: StateClient, new_run: NewRun) -> None:
    first, _ = await client.create_run(new_run(message="one"))
    second, _ = await client.create_run(
        new_run(message="two", conversation_id=first.conversation_id)
    )
    assert second.conversation_id == first.conversation_id
    transcript = await client.messages(first.conversation_id, user_id="alice")
    assert [m.content[0]["text"] for m in transcript.messages] == ["one", "two"]


async def test_create_enqueues_with_the_marker(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run(kind="interactive"))
    assert await redis.get(redis_keys.enqueued(run.run_id)) == "1"
    assert 0 < await redis.ttl(redis_keys.enqueued(run.run_id)) <= 7 * 24 * 3600
    entries = stream_entries(
        await redis.xrevrange(redis_keys.run_queue("interactive", run.run_id), count=50)
    )
    assert {"run_id": run.run_id} in [fields for _, fields in entries]


async def test_list_runs_newest_first_with_a_cursor(client: StateClient, new_run: NewRun) -> None:
    made = [(await client.create_run(new_run(message=f"m{i}")))[0].run_id for i in range(5)]
    await client.create_run(new_run(user_id="bob"))
    first = await client.list_runs(user_id="alice", limit=2)
    second = await client.list_runs(user_id="alice", limit=2, cursor=first.next_cursor)
    third = await client.list_runs(user_id="alice", limit=2, cursor=second.next_cursor)
    pages = [first, second, third]
    assert [r.run_id for p in pages for r in p.runs] == made[::-1]
    assert first.next_cursor and second.next_cursor and third.next_cursor is None
    everything = await client.list_runs(user_id="alice", limit=100)
    assert len(everything.runs) == 5 and everything.next_cursor is None


async def test_list_runs_filters_by_status_across_pages(
    client: StateClient, new_run: NewRun
) -> None:
    made = [(await client.create_run(new_run(message=f"m{i}")))[0].run_id for i in range(4)]
    await client.cancel_run(made[0], user_id="alice")
    await client.cancel_run(made[2], user_id="alice")
    await client.claim_run(made[3], consumer="runner-a")
    cancelled = await client.list_runs(user_id="alice", limit=1, statuses=["cancelled"])
    rest = await client.list_runs(
        user_id="alice", limit=1, statuses=["cancelled"], cursor=cancelled.next_cursor
    )
    assert [r.run_id for r in cancelled.runs + rest.runs] == [made[2], made[0]]
    assert rest.next_cursor is None
    active = await client.list_runs(user_id="alice", statuses=["queued", "running"])
    assert [(r.run_id, r.status) for r in active.runs] == [
        (made[3], "running"),
        (made[1], "queued"),
    ]


async def test_list_runs_refuses_an_unknown_status(http: httpx.AsyncClient) -> None:
    resp = await http.get("/runs", params={"user_id": "alice", "status": "done"})
    assert resp.status_code == 422


@pytest.mark.parametrize("cursor", ["%%%", "bm90LWEtbnVtYmVy", "-1", "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA"])
async def test_malformed_cursor_is_400(http: httpx.AsyncClient, cursor: str) -> None:
    resp = await http.get("/runs", params={"user_id": "alice", "cursor": cursor})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "malformed cursor"


async def test_limit_out_of_range_is_422(client: StateClient) -> None:
    with pytest.raises(StateError) as err:
        await client.list_runs(user_id="alice", limit=101)
    assert err.value.status == 422


async def test_cancel_of_a_queued_run_finishes_it_with_a_done_event(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run())
    cancelled = await client.cancel_run(run.run_id, user_id="alice")
    assert cancelled.status == "cancelled"
    assert cancelled.cancel_requested and cancelled.finished_at is not None
    assert await redis.get(redis_keys.cancel(run.run_id)) == "1"
    entries = stream_entries(await redis.xrange(redis_keys.events(run.run_id)))
    assert [events.decode_entry(i, f) for i, f in entries][-1].data == {
        "status": "cancelled",
        "cost_usd": 0.0,
    }
    assert 0 < await redis.ttl(redis_keys.events(run.run_id)) <= 86400

    again = await client.cancel_run(run.run_id, user_id="alice")
    assert again == cancelled
    assert len(stream_entries(await redis.xrange(redis_keys.events(run.run_id)))) == 1


async def test_cancel_of_a_running_run_is_recorded_for_the_runner(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run())
    await client.claim_run(run.run_id, consumer="runner-1")
    cancelled = await client.cancel_run(run.run_id, user_id="alice")
    assert cancelled.status == "running" and cancelled.cancel_requested
    assert await redis.get(redis_keys.cancel(run.run_id)) == "1"
    assert await redis.exists(redis_keys.events(run.run_id)) == 0
    assert (await client.get_run(run.run_id)).cancel_requested


async def test_concurrent_submissions_with_one_key_create_one_run(
    client: StateClient, new_run: NewRun
) -> None:
    results = await asyncio.gather(
        *(client.create_run(new_run(idempotency_key="race")) for _ in range(8))
    )
    assert len({run.run_id for run, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len((await client.list_runs(user_id="alice")).runs) == 1
