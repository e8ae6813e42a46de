"""`GET /internal/v1/spend/daily`: a user's spend for a UTC day, by the cost ledger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from relay_core.state_api import CreateRunIn, FinishIn
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
    await client.claim_run(unfinished.run_id, consumer="runner-a")  # in flight: not recorded

    got = await client.daily_spend(user_id="alice", day=today())
    assert got.user_id == "alice" and got.day.isoformat() == today()
    assert got.cost_usd == pytest.approx(0.375) and got.runs == 2
    assert (await client.daily_spend(user_id="bob", day=today())).cost_usd == pytest.approx(3.0)


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
