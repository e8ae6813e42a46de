"""Admission at submit: per-user concurrent runs, one active run per conversation,
the run's ceilings, and slots given back when a run is not created.

No runner consumes the queue here, so every accepted run stays `queued`
(counted as in flight) until the test cancels it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from relay_core import keys
from relay_gateway import runids
from relay_gateway.active_runs import UNKNOWN_GRACE_S


async def _submit(gateway: Any, user: Any, **body: Any) -> Any:
    return await gateway.post("/v1/runs", json={"message": "hi", **body}, headers=user.auth)


async def _active(redis: Any, user: Any) -> set[str]:
    return set(await redis.smembers(keys.user_active_runs(user.user_id)))


async def test_concurrent_runs_limit_is_429_with_retry_after_until_one_ends(
    gateway: Any, new_user: Any, redis: Any
) -> None:
    alice = await new_user(max_concurrent_runs=2)
    first, second = await _submit(gateway, alice), await _submit(gateway, alice)
    assert first.status_code == second.status_code == 202
    assert await _active(redis, alice) == {first.json()["run_id"], second.json()["run_id"]}

    refused = await _submit(gateway, alice)
    assert refused.status_code == 429
    assert refused.json()["error"]["reason"] == "concurrent_runs"
    assert int(refused.headers["retry-after"]) >= 1
    assert len(await _active(redis, alice)) == 2  # the refused run took nothing

    # Cancelling a queued run ends it in state, which frees its slot.
    cancel = await gateway.post(f"/v1/runs/{first.json()['run_id']}/cancel", headers=alice.auth)
    assert cancel.json()["status"] == "cancelled"
    assert (await _submit(gateway, alice)).status_code == 202


async def test_concurrent_submissions_on_two_replicas_never_exceed_the_limit(
    gateway: Any, make_gateway: Any, state_service: Any, new_user: Any, redis: Any
) -> None:
    alice = await new_user(max_concurrent_runs=5)
    async with make_gateway(state_service.url) as replica:
        results = await asyncio.gather(
            *(_submit(gw, alice) for _ in range(10) for gw in (gateway, replica))
        )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [202] * 5 + [429] * 15
    accepted = {r.json()["run_id"] for r in results if r.status_code == 202}
    assert await _active(redis, alice) == accepted


async def test_gateway_default_limit_applies_to_keys_without_one(
    make_gateway: Any, state_service: Any, new_user: Any
) -> None:
    alice = await new_user()
    async with make_gateway(state_service.url, max_concurrent_runs=1) as gw:
        assert (await _submit(gw, alice)).status_code == 202
        assert (await _submit(gw, alice)).status_code == 429


async def test_leaked_slots_are_repaired_when_the_user_looks_full(
    gateway: Any, new_user: Any, redis: Any
) -> None:
    alice = await new_user(max_concurrent_runs=3)
    finished = (await _submit(gateway, alice)).json()["run_id"]
    await gateway.post(f"/v1/runs/{finished}/cancel", headers=alice.auth)
    name = keys.user_active_runs(alice.user_id)
    never_created = runids.new_run_id(time.time() - UNKNOWN_GRACE_S - 5)
    in_flight = runids.new_run_id()  # a submission on another replica, not created yet
    # A runner that lost Redis at `done`, a gateway that died before creating its run.
    await redis.sadd(name, finished, never_created, in_flight)

    resp = await _submit(gateway, alice)
    assert resp.status_code == 202, resp.text
    assert await _active(redis, alice) == {in_flight, resp.json()["run_id"]}


async def test_a_run_not_created_gives_its_slot_back(
    gateway: Any, new_user: Any, redis: Any
) -> None:
    alice, bob = await new_user(), await new_user()
    theirs = (await _submit(gateway, bob)).json()["conversation_id"]
    assert (await _submit(gateway, alice, conversation_id=theirs)).status_code == 404
    assert await _active(redis, alice) == set()


async def test_an_idempotent_replay_holds_one_slot(gateway: Any, new_user: Any, redis: Any) -> None:
    alice = await new_user()
    headers = {**alice.auth, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = await gateway.post("/v1/runs", json={"message": "once"}, headers=headers)
    again = await gateway.post("/v1/runs", json={"message": "once"}, headers=headers)
    assert again.json()["run_id"] == first.json()["run_id"]
    assert await _active(redis, alice) == {first.json()["run_id"]}


async def test_a_retry_at_the_concurrent_runs_limit_gets_its_run_back(
    gateway: Any, new_user: Any, redis: Any
) -> None:
    """The first attempt filled the limit: its retry is the replay, not a 429,
    while a new run (another key, or none) still gets the 429."""
    alice, bob = await new_user(max_concurrent_runs=1), await new_user(max_concurrent_runs=1)
    key = f"k-{uuid.uuid4().hex}"
    headers = {**alice.auth, "Idempotency-Key": key}
    first = await gateway.post("/v1/runs", json={"message": "once"}, headers=headers)
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers

    again = await gateway.post("/v1/runs", json={"message": "once"}, headers=headers)
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await _active(redis, alice) == {first.json()["run_id"]}  # the replay took nothing

    new_key = {**alice.auth, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    for refused in (
        await gateway.post("/v1/runs", json={"message": "once"}, headers=new_key),
        await _submit(gateway, alice),
    ):
        assert refused.status_code == 429
        assert refused.json()["error"]["reason"] == "concurrent_runs"
    # The key reused for a different request keeps its answer: 409, as with room.
    other = await gateway.post("/v1/runs", json={"message": "other"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["type"] == "conflict"
    # Another user at its limit with the same key name gets its own 429, not alice's run.
    assert (await _submit(gateway, bob)).status_code == 202
    theirs = await gateway.post(
        "/v1/runs", json={"message": "once"}, headers={**bob.auth, "Idempotency-Key": key}
    )
    assert theirs.status_code == 429
    assert await _active(redis, alice) == {first.json()["run_id"]}
    # A finished run is replayed too (with room or without).
    await gateway.post(f"/v1/runs/{first.json()['run_id']}/cancel", headers=alice.auth)
    assert (await _submit(gateway, alice)).status_code == 202  # the limit is full again
    late = await gateway.post("/v1/runs", json={"message": "once"}, headers=headers)
    assert late.status_code == 202 and late.headers["idempotent-replayed"] == "true"
    assert late.json()["run_id"] == first.json()["run_id"]
    assert late.json()["status"] == "cancelled"


async def test_busy_conversation_rejects_by_default_and_enqueues_on_request(
    gateway: Any, new_user: Any, redis: Any, state_client: Any
) -> None:
    alice = await new_user()
    first = (await _submit(gateway, alice)).json()
    conv = first["conversation_id"]

    busy = await _submit(gateway, alice, conversation_id=conv)
    assert busy.status_code == 409
    assert busy.json()["error"]["type"] == "conflict"
    assert busy.json()["error"]["reason"] == "conversation_busy"
    assert await _active(redis, alice) == {first["run_id"]}

    later = await _submit(gateway, alice, conversation_id=conv, on_conflict="enqueue")
    assert later.status_code == 202 and later.json()["status"] == "queued"
    assert (await state_client.get_run(later.json()["run_id"])).deferred
    # Ending the active run hands the conversation to the waiting one.
    await gateway.post(f"/v1/runs/{first['run_id']}/cancel", headers=alice.auth)
    assert not (await state_client.get_run(later.json()["run_id"])).deferred

    bad = await _submit(gateway, alice, conversation_id=conv, on_conflict="later")
    assert bad.status_code == 422


async def test_the_run_carries_its_ceilings(
    make_gateway: Any, state_service: Any, new_user: Any, state_client: Any
) -> None:
    capped = await new_user(run_limit_usd=0.5, daily_limit_usd=3.0)
    plain = await new_user()
    async with make_gateway(state_service.url, default_daily_limit_usd=12.5) as gw:
        mine = (await _submit(gw, capped)).json()["run_id"]
        theirs = (await _submit(gw, plain, max_cost_usd=0.2)).json()["run_id"]
    run = await state_client.get_run(mine)
    assert (run.max_cost_usd, run.daily_limit_usd) == (0.5, 3.0)
    run = await state_client.get_run(theirs)
    assert (run.max_cost_usd, run.daily_limit_usd) == (0.2, 12.5)


async def test_run_ids_are_minted_by_the_gateway_in_states_format(
    gateway: Any, new_user: Any
) -> None:
    alice = await new_user()
    before = time.time()
    run_id = (await _submit(gateway, alice)).json()["run_id"]
    minted = runids.minted_at(run_id)
    assert minted is not None and before - 1 <= minted <= time.time() + 1
    assert runids.minted_at("run_nothex") is None


async def test_the_kill_switch_refuses_a_submission_before_it_takes_any_slot(
    gateway: Any, new_user: Any, redis: Any
) -> None:
    """The kill switch is read in the admission's round trip (`admit_script`), and
    a run it refuses ends holding nothing (a slot taken in the same round trip
    is given back at once)."""
    alice = await new_user()
    await redis.set(keys.KILL_SWITCH, "1")
    try:
        background = await _submit(gateway, alice)
        chat = await gateway.post("/v1/chat/stream", json={"message": "hi"}, headers=alice.auth)
    finally:
        await redis.delete(keys.KILL_SWITCH)
    for resp in (background, chat):
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["reason"] == "kill_switch"
    assert await _active(redis, alice) == set()
    assert (await gateway.get("/v1/runs", headers=alice.auth)).json()["runs"] == []
    assert (await _submit(gateway, alice)).status_code == 202  # the switch is off again
