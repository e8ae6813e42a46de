"""Claiming a run (a new attempt under a lease) and finishing it.

Decisions:

- The attempt number is the fencing token: every claim increments
  `runs.attempts`, and checkpoint and finish writes carrying another number
  are refused (409 `stale_attempt`), so a runner presumed dead that wakes up
  cannot corrupt the run.
- The Redis lease decides who may claim: a claim while another consumer holds
  a live lease is a duplicate delivery (409 `leased`); only an expired lease
  lets another runner take over. The lease is taken before the attempt is
  incremented and released again if the database step fails, so a failed
  claim never leaves a run unclaimable for a whole lease.
- Finishing is one transaction (status, cost, transcript, ledger row, and
  the hand-off of the conversation to its next deferred run, see `handoff`);
  a retried finish of the same attempt finds the run terminal and answers it
  unchanged.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core.errors import ApiError
from relay_core.events import TERMINAL_STATUSES
from relay_core.state_api import ClaimOut, FinishIn, RunOut
from relay_state import cache, checkpoints, conversations, handoff, ids, queue, rows
from relay_state.db import Database

log = logging.getLogger(__name__)


def _redis_unavailable(exc: RedisError) -> ApiError:
    return ApiError(503, f"redis unavailable: {type(exc).__name__}")


async def _take_lease(
    *, redis: Redis, run_id: str, consumer: str, attempt: int, ttl_s: float
) -> bool:
    """True when taken now, False when this consumer already held it; 409 otherwise."""
    try:
        taken, current = await queue.take_lease(
            redis=redis, run_id=run_id, consumer=consumer, attempt=attempt, ttl_s=ttl_s
        )
    except RedisError as exc:
        raise _redis_unavailable(exc) from exc
    if not taken and queue.lease_holder(current) != consumer:
        raise ApiError(409, "the run is leased by another runner", type_="leased")
    return taken


async def claim_run(
    *, db: Database, redis: Redis, run_id: str, consumer: str, lease_ttl_s: float
) -> ClaimOut:
    ids.require(run_id, "run")
    async with db.connection() as conn:
        current = await conn.fetchrow("SELECT status, attempts FROM runs WHERE id = $1", run_id)
    if current is None:
        raise ids.not_found("run")
    if current["status"] in TERMINAL_STATUSES:
        raise checkpoints.terminal(current["status"])
    taken = await _take_lease(
        redis=redis,
        run_id=run_id,
        consumer=consumer,
        attempt=current["attempts"] + 1,
        ttl_s=lease_ttl_s,
    )
    try:
        claim = await _new_attempt(db=db, run_id=run_id)
        await queue.set_lease(
            redis=redis, run_id=run_id, consumer=consumer, attempt=claim.attempt, ttl_s=lease_ttl_s
        )
    except BaseException as exc:
        if taken:
            value = queue.lease_value(consumer, current["attempts"] + 1)
            await _release_quietly(redis=redis, run_id=run_id, value=value)
        if isinstance(exc, RedisError):
            raise _redis_unavailable(exc) from exc
        raise
    log.info("run claimed", extra={"run_id": run_id, "attempt": claim.attempt})
    return claim


async def _release_quietly(*, redis: Redis, run_id: str, value: str) -> None:
    try:
        await queue.release_lease(redis=redis, run_id=run_id, value=value)
    except RedisError:
        log.warning("could not release the lease of a failed claim", extra={"run_id": run_id})


async def _new_attempt(*, db: Database, run_id: str) -> ClaimOut:
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            """
            UPDATE runs SET attempts = attempts + 1, status = 'running',
                started_at = coalesce(started_at, now()), heartbeat_at = now()
            WHERE id = $1 AND status IN ('queued', 'running')
            RETURNING *
            """,
            run_id,
        )
        if row is None:  # finished or cancelled since we looked
            raise checkpoints.terminal("finished")
        history = await conversations.history_for_run(
            conn=conn, conversation_id=row["conversation_id"], run_id=run_id, run_seq=row["seq"]
        )
        cps = await checkpoints.for_run(conn=conn, run_id=run_id)
    return ClaimOut(
        run=rows.run_out(row), attempt=row["attempts"], history=history, checkpoints=cps
    )


async def _settle(*, redis: Redis, run: RunOut, attempt: int) -> None:
    await cache.invalidate(redis=redis, conversation_id=run.conversation_id)
    await queue.settle(redis=redis, run_id=run.run_id, attempt=attempt)


async def finish_run(*, db: Database, redis: Redis, run_id: str, fin: FinishIn) -> RunOut:
    ids.require(run_id, "run")
    async with db.transaction() as conn:
        row = await conn.fetchrow("SELECT * FROM runs WHERE id = $1 FOR UPDATE", run_id)
        if row is None:
            raise ids.not_found("run")
        promoted = None
        if fin.attempt != row["attempts"]:
            raise checkpoints.stale_attempt(fin.attempt, row["attempts"])
        if row["status"] not in TERMINAL_STATUSES:
            row = await conn.fetchrow(
                """
                UPDATE runs SET status = $2, error = $3, cost_usd = $4, finished_at = now(),
                    heartbeat_at = now()
                WHERE id = $1 RETURNING *
                """,
                run_id,
                fin.status,
                fin.error,
                rows.numeric(fin.cost_usd),
            )
            await conversations.append(
                conn=conn,
                conversation_id=row["conversation_id"],
                run_id=run_id,
                run_seq=row["seq"],
                messages=fin.messages,
            )
            await conn.execute(
                """
                INSERT INTO cost_ledger (user_id, run_id, model, input_tokens, output_tokens,
                                         cost_usd)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                row["user_id"],
                run_id,
                row["model"],
                fin.input_tokens,
                fin.output_tokens,
                rows.numeric(fin.cost_usd),
            )
            # The next deferred run of the conversation, if any, becomes active.
            promoted = await handoff.promote_next(conn=conn, conversation_id=row["conversation_id"])
    run = rows.run_out(row)
    log.info("run finished", extra={"run_id": run_id, "status": run.status})
    await queue.best_effort(
        _settle(redis=redis, run=run, attempt=fin.attempt),
        what="cache invalidation and lease release after finish",
        run_id=run_id,
    )
    await handoff.enqueue_promoted(redis=redis, promoted=promoted)
    return run
