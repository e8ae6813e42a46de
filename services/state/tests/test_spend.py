"""`GET /internal/v1/spend/daily`: a user's spend for a UTC day, by the cost ledger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from relay_core.state_api import CheckpointIn, CreateRunIn, FinishIn
from relay_core.state_client import StateClient
from relay_state.db import Database


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


async def finished_run(
    client: StateClient, new_run: Callable[..., CreateRunIn], user: str, cost: float
) -> str:
    run, _ = await client.create_run(new_run(user_id=user))
    claim = await client.claim_run(run.run_id, consumer="runner-a")
    fin = FinishIn(attempt=claim.attempt, status="succeeded", cost_usd=cost)
    await client.finish_run(run.run_id, fin)
    return run.run_id


async def test_the_days_finished_runs_are_summed_for_that_user_only(
    client: StateClient, new_run: Callable[..., CreateRunIn], db: Database
) -> None:
    await finished_run(client, new_run, "alice", 0.25)
    await finished_run(client, new_run, "alice", 0.125)
    await finished_run(client, new_run, "bob", 3.0)
    unfinished, _ = await client.create_run(new_run(user_id="alice"))
    await client.claim_run(unfinished.run_id, consumer="runner-a")  # in flight, no turn yet

    got = await client.daily_spend(user_id="alice", day=today())
    assert got.user_id == "alice" and got.day.isoformat() == today()
    assert got.cost_usd == pytest.approx(0.375) and got.runs == 2 and got.runs_in_flight == 0
    assert (await client.daily_spend(user_id="bob", day=today())).cost_usd == pytest.approx(3.0)


def turn(attempt: int, step: int, cost: object) -> CheckpointIn:
    payload = {"content": [], "model": "sim-default", "cost_usd": cost}
    return CheckpointIn(attempt=attempt, step=step, kind="model_turn", payload=payload)


async def test_runs_in_flight_count_their_checkpointed_model_turns(
    client: StateClient, new_run: Callable[..., CreateRunIn], db: Database
) -> None:
    """A lost counter re-seeded mid-run must not forget what running runs spent."""
    await finished_run(client, new_run, "dora", 0.25)
    run, _ = await client.create_run(new_run(user_id="dora"))
    claim = await client.claim_run(run.run_id, consumer="runner-a")
    await client.checkpoint(run.run_id, turn(claim.attempt, 0, 0.125))
    await client.checkpoint(run.run_id, turn(claim.attempt, 1, 0.0625))
    tool = CheckpointIn(attempt=claim.attempt, step=1, kind="tool_result", payload={"x": 1})
    await client.checkpoint(run.run_id, tool)  # no cost: not a model turn
    await client.checkpoint(run.run_id, turn(claim.attempt, 2, "junk"))  # not a number: skipped
    other, _ = await client.create_run(new_run(user_id="erin"))  # another user's turn
    other_claim = await client.claim_run(other.run_id, consumer="runner-a")
    await client.checkpoint(other.run_id, turn(other_claim.attempt, 0, 5.0))

    got = await client.daily_spend(user_id="dora", day=today())
    assert got.cost_usd == pytest.approx(0.4375)
    assert (got.runs, got.runs_in_flight) == (1, 1)

    async with db.connection() as conn:  # a turn checkpointed yesterday is yesterday's spend
        await conn.execute(
            "UPDATE run_checkpoints SET created_at = created_at - interval '1 day'"
            " WHERE run_id = $1 AND step = 0",
            run.run_id,
        )
    assert (await client.daily_spend(user_id="dora", day=today())).cost_usd == pytest.approx(0.3125)

    # once it finishes, the run counts once, by its ledger row
    fin = FinishIn(attempt=claim.attempt, status="succeeded", cost_usd=0.2)
    await client.finish_run(run.run_id, fin)
    got = await client.daily_spend(user_id="dora", day=today())
    assert got.cost_usd == pytest.approx(0.45)
    assert (got.runs, got.runs_in_flight) == (2, 0)


async def test_the_day_is_the_ledger_rows_utc_day(
    client: StateClient, new_run: Callable[..., CreateRunIn], db: Database
) -> None:
    run_id = await finished_run(client, new_run, "carol", 0.5)
    async with db.connection() as conn:
        await conn.execute("UPDATE cost_ledger SET day = day - 1 WHERE run_id = $1", run_id)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    assert (await client.daily_spend(user_id="carol", day=today())).cost_usd == 0.0
    assert (await client.daily_spend(user_id="carol", day=yesterday)).cost_usd == 0.5


async def test_a_user_without_spend_gets_zero(client: StateClient) -> None:
    got = await client.daily_spend(user_id="nobody", day=today())
    assert got.cost_usd == 0.0 and got.runs == 0


@pytest.mark.parametrize(
    "params",
    [
        {"user_id": "alice", "day": "yesterday"},
        {"user_id": "alice", "day": "2026-13-01"},
        {"user_id": "alice"},
        {"day": "2026-01-01"},
        {"user_id": "", "day": "2026-01-01"},
    ],
)
async def test_bad_input_is_a_clear_4xx(http: httpx.AsyncClient, params: dict[str, str]) -> None:
    resp = await http.get("/spend/daily", params=params)
    assert resp.status_code == 422
    assert resp.json()["error"]["type"] == "invalid_request"


async def test_the_internal_token_is_required(http: httpx.AsyncClient) -> None:
    resp = await http.get(
        "/spend/daily",
        params={"user_id": "alice", "day": today()},
        headers={"X-Relay-Internal-Token": "wrong"},
    )
    assert resp.status_code in (401, 403)


async def test_the_days_total_sums_every_user_finished_and_in_flight(
    client: StateClient, new_run: Callable[..., CreateRunIn], db: Database
) -> None:
    """`/spend/daily/total` (the admin overview's "spend today"): every user's ledger
    rows of the day, plus the turns runs in flight checkpointed that day."""
    await finished_run(client, new_run, "alice", 0.25)
    await finished_run(client, new_run, "bob", 3.0)
    old = await finished_run(client, new_run, "bob", 7.0)
    async with db.connection() as conn:
        await conn.execute("UPDATE cost_ledger SET day = day - 1 WHERE run_id = $1", old)
    running, _ = await client.create_run(new_run(user_id="carol"))
    claim = await client.claim_run(running.run_id, consumer="runner-a")
    await client.checkpoint(running.run_id, turn(claim.attempt, 0, 0.5))

    got = await client.daily_spend_total(day=today())
    assert got.day.isoformat() == today()
    assert got.cost_usd == pytest.approx(3.75)
    assert (got.runs, got.runs_in_flight) == (2, 1)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    assert (await client.daily_spend_total(day=yesterday)).cost_usd == pytest.approx(7.0)


async def test_the_days_total_refuses_a_malformed_day(http: httpx.AsyncClient) -> None:
    resp = await http.get("/spend/daily/total", params={"day": "today"})
    assert resp.status_code == 422
    assert resp.json()["error"]["type"] == "invalid_request"
