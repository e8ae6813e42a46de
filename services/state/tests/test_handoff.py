"""One active run per conversation: `on_conflict` reject / enqueue, and the hand-off.

A deferred run is recorded `queued` but is on no Redis queue until the active
run of its conversation ends (finish, or cancel while queued); the reconciler
never enqueues it early, and hands it off if the active run ended without it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any, Literal

import pytest
from redis.asyncio import Redis

from relay_core import keys as redis_keys
from relay_core.state_api import CreateRunIn, FinishIn, RunOut
from relay_core.state_client import Conflict, StateClient
from relay_state.db import Database
from relay_state.reconcile import hand_off_orphans, reconcile_once

NewRun = Callable[..., CreateRunIn]


async def _on_queue(redis: Redis, run: RunOut) -> bool:
    entries: Any = await redis.xrange(redis_keys.run_queue(run.kind, run.run_id))
    return any(fields.get("run_id") == run.run_id for _, fields in entries)


async def _finish(
    client: StateClient,
    run: RunOut,
    status: Literal["succeeded", "failed", "cancelled"] = "succeeded",
) -> RunOut:
    claim = await client.claim_run(run.run_id, consumer=f"runner-{uuid.uuid4().hex[:6]}")
    fin = FinishIn(attempt=claim.attempt, status=status)
    return await client.finish_run(run.run_id, fin)


async def _active(db: Database, conversation_id: str) -> list[str]:
    async with db.connection() as conn:
        found = await conn.fetch(
            """
            SELECT id FROM runs WHERE conversation_id = $1
              AND status IN ('queued', 'running') AND NOT deferred ORDER BY seq
            """,
            conversation_id,
        )
    return [r["id"] for r in found]


async def test_reject_answers_409_conversation_busy(client: StateClient, new_run: NewRun) -> None:
    first, _ = await client.create_run(new_run())
    with pytest.raises(Conflict) as err:
        await client.create_run(
            new_run(conversation_id=first.conversation_id, on_conflict="reject")
        )
    assert err.value.body["error"] == {
        "type": "conflict",
        "message": err.value.body["error"]["message"],
        "reason": "conversation_busy",
    }
    # Nothing was recorded: the transcript still holds only the first message.
    transcript = await client.messages(first.conversation_id, user_id="alice")
    assert len(transcript.messages) == 1
    # Once the active run is over, the conversation takes the next run at once.
    await _finish(client, first)
    second, created = await client.create_run(
        new_run(conversation_id=first.conversation_id, on_conflict="reject")
    )
    assert created and not second.deferred


async def test_enqueue_defers_until_the_active_run_finishes_oldest_first(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    first, _ = await client.create_run(new_run(message="one"))
    conv = first.conversation_id
    second, _ = await client.create_run(
        new_run(message="two", conversation_id=conv, on_conflict="enqueue")
    )
    third, _ = await client.create_run(
        new_run(message="three", conversation_id=conv, on_conflict="enqueue")
    )
    assert second.status == third.status == "queued"
    assert second.deferred and third.deferred
    assert not await _on_queue(redis, second) and not await _on_queue(redis, third)
    assert await redis.exists(redis_keys.enqueued(second.run_id)) == 0

    await _finish(client, first)
    assert not (await client.get_run(second.run_id)).deferred
    assert await _on_queue(redis, second)
    assert (await client.get_run(third.run_id)).deferred  # one at a time
    assert not await _on_queue(redis, third)

    claim = await client.claim_run(second.run_id, consumer="runner-x")
    # The handed-off run's history holds the first run's turn, not the third's message.
    assert [m.content[0]["text"] for m in claim.history] == ["one", "two"]
    await client.finish_run(second.run_id, FinishIn(attempt=claim.attempt, status="failed"))
    assert not (await client.get_run(third.run_id)).deferred
    assert await _on_queue(redis, third)


async def test_cancelling_the_queued_active_run_hands_off(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    first, _ = await client.create_run(new_run())
    waiting, _ = await client.create_run(
        new_run(conversation_id=first.conversation_id, on_conflict="enqueue")
    )
    await client.cancel_run(first.run_id, user_id="alice")
    assert not (await client.get_run(waiting.run_id)).deferred
    assert await _on_queue(redis, waiting)


async def test_cancelling_a_deferred_run_skips_it(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    first, _ = await client.create_run(new_run())
    conv = first.conversation_id
    skipped, _ = await client.create_run(new_run(conversation_id=conv, on_conflict="enqueue"))
    after, _ = await client.create_run(new_run(conversation_id=conv, on_conflict="enqueue"))
    cancelled = await client.cancel_run(skipped.run_id, user_id="alice")
    assert cancelled.status == "cancelled"
    assert (await client.get_run(after.run_id)).deferred  # the first run is still active
    await _finish(client, first)
    assert await _on_queue(redis, after)
    assert not await _on_queue(redis, skipped)


async def test_concurrent_rejects_let_exactly_one_run_in(
    client: StateClient, db: Database, new_run: NewRun
) -> None:
    first, _ = await client.create_run(new_run())
    conv = first.conversation_id
    await _finish(client, first)

    async def submit() -> RunOut | None:
        try:
            run, _ = await client.create_run(new_run(conversation_id=conv, on_conflict="reject"))
        except Conflict:
            return None
        return run

    results = await asyncio.gather(*(submit() for _ in range(10)))
    admitted = [r for r in results if r is not None]
    assert len(admitted) == 1
    assert await _active(db, conv) == [admitted[0].run_id]


async def test_submissions_racing_a_finish_never_leave_two_active_or_none(
    client: StateClient, redis: Redis, db: Database, new_run: NewRun
) -> None:
    first, _ = await client.create_run(new_run())
    conv = first.conversation_id
    claim = await client.claim_run(first.run_id, consumer="runner-race")
    finish = client.finish_run(first.run_id, FinishIn(attempt=claim.attempt, status="succeeded"))
    submits = [
        client.create_run(new_run(message=f"m{i}", conversation_id=conv, on_conflict="enqueue"))
        for i in range(8)
    ]
    results: list[Any] = await asyncio.gather(finish, *submits)
    made = {run.run_id for run, _ in results[1:]}
    active = await _active(db, conv)
    assert len(active) == 1
    # The active one is the oldest (by creation order) of the new runs, on its queue.
    async with db.connection() as conn:
        oldest = await conn.fetchval(
            "SELECT id FROM runs WHERE id = ANY($1::text[]) ORDER BY seq LIMIT 1", list(made)
        )
    assert active == [oldest]
    assert await _on_queue(redis, await client.get_run(oldest))


async def test_reconciler_never_enqueues_a_deferred_run_but_hands_off_orphans(
    client: StateClient, redis: Redis, db: Database, new_run: NewRun
) -> None:
    first, _ = await client.create_run(new_run())
    waiting, _ = await client.create_run(
        new_run(conversation_id=first.conversation_id, on_conflict="enqueue")
    )
    result, _ = await reconcile_once(db=db, redis=redis, batch=1000, min_age_s=0)
    assert waiting.run_id not in result.reenqueued
    assert not await _on_queue(redis, waiting)
    assert await hand_off_orphans(db=db, redis=redis, batch=1000) == []

    # The active run ends by a path that skipped the hand-off.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE runs SET status = 'failed', finished_at = now() WHERE id = $1", first.run_id
        )
    promoted = await hand_off_orphans(db=db, redis=redis, batch=1000)
    assert waiting.run_id in promoted
    assert not (await client.get_run(waiting.run_id)).deferred
    assert await _on_queue(redis, waiting)


async def test_a_lost_enqueue_after_a_hand_off_is_reconciled(
    client: StateClient, redis: Redis, db: Database, new_run: NewRun
) -> None:
    first, _ = await client.create_run(new_run())
    waiting, _ = await client.create_run(
        new_run(conversation_id=first.conversation_id, on_conflict="enqueue")
    )
    await _finish(client, first)
    # Redis loses the hand-off's queue entry.
    stream = redis_keys.run_queue("background", waiting.run_id)
    entries: Any = await redis.xrange(stream)
    for entry_id, fields in entries:
        if fields.get("run_id") == waiting.run_id:
            await redis.xdel(stream, entry_id)
    await redis.delete(redis_keys.enqueued(waiting.run_id))
    result, _ = await reconcile_once(db=db, redis=redis, batch=1000, min_age_s=0)
    assert waiting.run_id in result.reenqueued
    assert await _on_queue(redis, waiting)
