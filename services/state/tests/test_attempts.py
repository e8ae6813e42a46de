"""Claims (attempts, leases), checkpoints and finish, all fenced by the attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from redis.asyncio import Redis

from relay_core import keys as redis_keys
from relay_core.state_api import CheckpointIn, CreateRunIn, FinishIn, NewMessage
from relay_core.state_client import Conflict, StateClient
from relay_state.db import Database

NewRun = Callable[..., CreateRunIn]


def _cp(attempt: int, step: int = 0, kind: str = "tool_result", **payload: object) -> CheckpointIn:
    return CheckpointIn(attempt=attempt, step=step, kind=kind, payload=dict(payload))


def _assistant(text: str, tokens: int = 3) -> NewMessage:
    return NewMessage(
        role="assistant", content=[{"type": "text", "text": text}], token_count=tokens
    )


async def test_claim_takes_a_lease_and_increments_the_attempt(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run())
    claim = await client.claim_run(run.run_id, consumer="runner-a")
    assert claim.attempt == 1
    assert claim.run.status == "running" and claim.run.attempts == 1
    assert claim.run.started_at is not None
    assert [m.role for m in claim.history] == ["user"]
    assert claim.checkpoints == []
    assert await redis.get(redis_keys.lease(run.run_id)) == "runner-a:1"
    assert 0 < await redis.pttl(redis_keys.lease(run.run_id)) <= 30_000

    with pytest.raises(Conflict) as err:
        await client.claim_run(run.run_id, consumer="runner-b")
    assert err.value.body["error"]["type"] == "leased"

    await redis.delete(redis_keys.lease(run.run_id))  # the lease expired
    second = await client.claim_run(run.run_id, consumer="runner-b")
    assert second.attempt == 2
    assert await redis.get(redis_keys.lease(run.run_id)) == "runner-b:2"


async def test_stale_attempt_cannot_checkpoint_or_finish(
    client: StateClient, http: httpx.AsyncClient, redis: Redis, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run())
    await client.claim_run(run.run_id, consumer="runner-a")
    await client.checkpoint(run.run_id, _cp(1, step=0, result="42"))
    await redis.delete(redis_keys.lease(run.run_id))
    claim = await client.claim_run(run.run_id, consumer="runner-b")
    assert claim.attempt == 2
    assert [(c.step, c.attempt, c.payload) for c in claim.checkpoints] == [(0, 1, {"result": "42"})]

    with pytest.raises(Conflict) as err:
        await client.checkpoint(run.run_id, _cp(1, step=1))
    assert err.value.body["error"]["type"] == "stale_attempt"
    with pytest.raises(Conflict) as err:
        await client.finish_run(run.run_id, FinishIn(attempt=1, status="succeeded"))
    assert err.value.body["error"]["type"] == "stale_attempt"

    # The first write of a (step, kind, call_index) wins; a rewrite answers 200.
    fresh = await http.post(f"/runs/{run.run_id}/checkpoints", json=_cp(2, step=1).model_dump())
    assert fresh.status_code == 201
    again = await http.post(
        f"/runs/{run.run_id}/checkpoints", json=_cp(2, step=0, result="other").model_dump()
    )
    assert again.status_code == 200
    assert again.json()["payload"] == {"result": "42"}


async def test_finish_writes_the_transcript_and_the_next_run_sees_it(
    client: StateClient, redis: Redis, db: Database, new_run: NewRun
) -> None:
    first, _ = await client.create_run(new_run(message="first question"))
    claim = await client.claim_run(first.run_id, consumer="runner-a")
    tool_use = NewMessage(
        role="assistant",
        content=[{"type": "tool_use", "id": "t1", "name": "calculator", "input": {"e": "2+2"}}],
    )
    tool_result = NewMessage(
        role="user", content=[{"type": "tool_result", "tool_use_id": "t1", "content": "4"}]
    )
    fin = FinishIn(
        attempt=claim.attempt,
        status="succeeded",
        cost_usd=0.0123,
        input_tokens=100,
        output_tokens=20,
        messages=[tool_use, tool_result, _assistant("first answer")],
    )
    done = await client.finish_run(first.run_id, fin)
    assert done.status == "succeeded" and done.cost_usd == pytest.approx(0.0123)
    assert done.finished_at is not None
    assert await redis.exists(redis_keys.lease(first.run_id)) == 0
    assert await redis.exists(redis_keys.enqueued(first.run_id)) == 0

    replay = await client.finish_run(first.run_id, fin)  # a retried finish
    assert replay == done

    second, _ = await client.create_run(
        new_run(message="second question", conversation_id=first.conversation_id)
    )
    in_flight, _ = await client.create_run(
        new_run(message="concurrent question", conversation_id=first.conversation_id)
    )
    claim2 = await client.claim_run(second.run_id, consumer="runner-a")
    assert [m.content[0].get("text", m.content[0]["type"]) for m in claim2.history] == [
        "first question",
        "tool_use",
        "tool_result",
        "first answer",
        "second question",
    ]
    assert claim2.history[-1].run_id == second.run_id
    transcript = await client.messages(first.conversation_id, user_id="alice")
    assert len(transcript.messages) == 6  # everything, including the run in flight
    assert transcript.messages[-1].run_id == in_flight.run_id
    # The claim's history (aggregated as JSON in its statement) is the same
    # transcript, field for field, as the one read row by row.
    assert claim2.history == transcript.messages[:5]

    async with db.connection() as conn:
        ledger = await conn.fetch("SELECT * FROM cost_ledger")
        idx = await conn.fetch(
            "SELECT idx FROM messages WHERE run_id = $1 ORDER BY idx", first.run_id
        )
    assert [(r["run_id"], r["input_tokens"], r["output_tokens"]) for r in ledger] == [
        (first.run_id, 100, 20)
    ]
    assert [r["idx"] for r in idx] == [0, 1, 2, 3]


async def test_claim_of_a_finished_run_is_409_terminal(
    client: StateClient, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run())
    claim = await client.claim_run(run.run_id, consumer="runner-a")
    await client.finish_run(
        run.run_id,
        FinishIn(attempt=claim.attempt, status="failed", error={"type": "model_unavailable"}),
    )
    with pytest.raises(Conflict) as err:
        await client.claim_run(run.run_id, consumer="runner-a")
    assert err.value.body["error"]["type"] == "terminal"
    assert (await client.get_run(run.run_id)).error == {"type": "model_unavailable"}

    cancelled, _ = await client.create_run(new_run())
    await client.cancel_run(cancelled.run_id, user_id="alice")
    with pytest.raises(Conflict) as err:
        await client.claim_run(cancelled.run_id, consumer="runner-a")
    assert err.value.body["error"]["type"] == "terminal"


async def test_the_same_consumer_may_claim_again(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    """A runner restarted under the same name takes its run over at once."""
    run, _ = await client.create_run(new_run())
    await client.claim_run(run.run_id, consumer="runner-a")
    again = await client.claim_run(run.run_id, consumer="runner-a")
    assert again.attempt == 2
    assert await redis.get(redis_keys.lease(run.run_id)) == "runner-a:2"


async def test_concurrent_claims_by_different_runners_give_one_attempt(
    client: StateClient, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run())
    results = await asyncio.gather(
        *(client.claim_run(run.run_id, consumer=f"runner-{i}") for i in range(6)),
        return_exceptions=True,
    )
    claims = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(claims) == 1 and len(refused) == 5
    assert claims[0].attempt == 1
    assert (await client.get_run(run.run_id)).attempts == 1


async def test_a_redelivery_to_the_same_runner_moves_its_lease_to_the_new_attempt(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run())
    await client.claim_run(run.run_id, consumer="runner-a", lease_ttl_s=5)
    again = await client.claim_run(run.run_id, consumer="runner-a", lease_ttl_s=20)
    assert again.attempt == 2
    assert await redis.get(redis_keys.lease(run.run_id)) == "runner-a:2"
    assert 5_000 < await redis.pttl(redis_keys.lease(run.run_id)) <= 20_000
