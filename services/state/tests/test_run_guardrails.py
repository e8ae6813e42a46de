"""What the gateway's guardrails need from state: caller-minted run ids, the
daily ceiling stored on the run, batch statuses, and slots freed on cancel."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from redis.asyncio import Redis

from relay_core import keys as redis_keys
from relay_core.state_api import CreateRunIn
from relay_core.state_client import Conflict, StateClient
from relay_state.db import Database

NewRun = Callable[..., CreateRunIn]


def run_id() -> str:
    return f"run_{uuid.uuid4().hex}"


async def test_the_callers_run_id_is_used(client: StateClient, new_run: NewRun) -> None:
    wanted = run_id()
    run, created = await client.create_run(new_run(run_id=wanted))
    assert created and run.run_id == wanted
    assert (await client.get_run(wanted)).run_id == wanted


async def test_a_taken_run_id_is_409_and_records_nothing(
    client: StateClient, new_run: NewRun, db: Database
) -> None:
    wanted = run_id()
    first, _ = await client.create_run(new_run(run_id=wanted))
    with pytest.raises(Conflict) as err:
        await client.create_run(new_run(user_id="bob", run_id=wanted))
    assert err.value.body["error"]["reason"] == "run_id_taken"
    assert (await client.list_runs(user_id="bob")).runs == []
    assert (await client.get_run(wanted)).user_id == first.user_id
    # The new conversation is created in the run's statement only with the run.
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM conversations WHERE user_id = 'bob'") == 0
        messages = await conn.fetchval("SELECT count(*) FROM messages WHERE run_id = $1", wanted)
    assert messages == 1


@pytest.mark.parametrize("bad", ["run_XYZ", "run_" + "a" * 31, "conv_" + "a" * 32, "x"])
async def test_a_malformed_run_id_is_422(
    http: httpx.AsyncClient, new_run: NewRun, bad: str
) -> None:
    body = new_run().model_dump() | {"run_id": bad}
    resp = await http.post("/runs", json=body)
    assert resp.status_code == 422, resp.text


async def test_the_daily_ceiling_travels_with_the_run_to_the_runner(
    client: StateClient, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run(max_cost_usd=0.25, daily_limit_usd=7.5))
    assert (run.max_cost_usd, run.daily_limit_usd) == (0.25, 7.5)
    claim = await client.claim_run(run.run_id, consumer="runner-limits")
    assert (claim.run.max_cost_usd, claim.run.daily_limit_usd) == (0.25, 7.5)
    listed = (await client.list_runs(user_id="alice")).runs
    assert listed[0].daily_limit_usd == 7.5
    plain, _ = await client.create_run(new_run())
    assert plain.daily_limit_usd is None


async def test_statuses_in_one_call(client: StateClient, new_run: NewRun) -> None:
    queued, _ = await client.create_run(new_run())
    cancelled, _ = await client.create_run(new_run())
    await client.cancel_run(cancelled.run_id, user_id="alice")
    got = await client.run_statuses([queued.run_id, cancelled.run_id, run_id(), "bad/id"])
    assert got == {queued.run_id: "queued", cancelled.run_id: "cancelled"}
    assert await client.run_statuses([]) == {}


async def test_cancelling_a_queued_run_frees_its_user_and_pool_slots(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    wanted = run_id()
    # What the gateway does before it creates an interactive run.
    await redis.sadd(redis_keys.user_active_runs(user), wanted)
    await redis.zadd(redis_keys.pool_admitted("interactive"), {wanted: 2**42})
    await client.create_run(new_run(user_id=user, run_id=wanted, kind="interactive"))
    await client.cancel_run(wanted, user_id=user)
    assert not await redis.sismember(redis_keys.user_active_runs(user), wanted)
    assert await redis.zscore(redis_keys.pool_admitted("interactive"), wanted) is None
