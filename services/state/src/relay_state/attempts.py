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
  claim never leaves a run unclaimable for a whole lease. When the lease was
  taken for exactly the attempt the claim then got (the usual case), it
  already holds the right value and TTL and is not written again.
- The new attempt is one statement: the update and, from the same snapshot,
  the conversation's history and the run's checkpoints (aggregated as JSON),
  so a claim costs two round trips to Postgres (the read, the update).
- Each claim records its trace context (`attempt_traceparent`: this request's
  span, inside the claiming attempt's `run` span) and answers the one before
  it as `previous_traceparent`, which the runner's `resumed` span links to.
- Finishing is one transaction (status, cost, transcript, ledger row, and
  the hand-off of the conversation to its next deferred run, see `handoff`);
  a retried finish of the same attempt finds the run terminal and answers it
  unchanged. Its writes to the run are one statement (`FINISH`, which also
  takes the conversation's row lock), then the hand-off's one (`handoff
  .promote_next` with `locked=True`): four round trips with BEGIN and COMMIT.
- Per-run lines (claimed, finished; created in `runs`) are DEBUG: the gateway
  logs each accepted run and the runner each finished one, and three more
  INFO lines per run were a few percent of state's CPU under a burst.
"""

from __future__ import annotations

import logging

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core import run_protocol, tracing
from relay_core.errors import ApiError
from relay_core.events import TERMINAL_STATUSES
from relay_core.rediscalls import RedisCalls
from relay_core.state_api import ClaimOut, FinishIn, RunOut
from relay_state import cache, checkpoints, handoff, ids, rows
from relay_state.besteffort import best_effort
from relay_state.db import Database

log = logging.getLogger(__name__)


def _redis_unavailable(exc: RedisError) -> ApiError:
    return ApiError(503, f"redis unavailable: {type(exc).__name__}")


async def _take_lease(
    *,
    redis: Redis,
    run_id: str,
    consumer: str,
    attempt: int,
    ttl_s: float,
    calls: RedisCalls | None,
) -> bool:
    """True when taken now, False when this consumer already held it; 409 otherwise."""
    try:
        taken, current = await run_protocol.take_lease(
            redis=redis,
            run_id=run_id,
            consumer=consumer,
            attempt=attempt,
            ttl_s=ttl_s,
            calls=calls,
        )
    except RedisError as exc:
        raise _redis_unavailable(exc) from exc
    if not taken and run_protocol.lease_holder(current) != consumer:
        raise ApiError(409, "the run is leased by another runner", type_="leased")
    return taken


async def claim_run(
    *,
    db: Database,
    redis: Redis,
    run_id: str,
    consumer: str,
    lease_ttl_s: float,
    calls: RedisCalls | None = None,
) -> ClaimOut:
    """`calls`: the process's coalesced Redis calls, for the lease."""
    ids.require(run_id, "run")
    async with db.connection() as conn:
        current = await conn.fetchrow(
            "SELECT status, attempts, attempt_traceparent FROM runs WHERE id = $1", run_id
        )
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
        calls=calls,
    )
    try:
        claim = await _new_attempt(db=db, run_id=run_id)
        claim.previous_traceparent = current["attempt_traceparent"]
        if not (taken and claim.attempt == current["attempts"] + 1):
            await run_protocol.set_lease(
                redis=redis,
                run_id=run_id,
                consumer=consumer,
                attempt=claim.attempt,
                ttl_s=lease_ttl_s,
            )
    except BaseException as exc:
        if taken:
            value = run_protocol.lease_value(consumer, current["attempts"] + 1)
            await _release_quietly(redis=redis, run_id=run_id, value=value)
        if isinstance(exc, RedisError):
            raise _redis_unavailable(exc) from exc
        raise
    log.debug("run claimed", extra={"run_id": run_id, "attempt": claim.attempt})
    return claim


async def _release_quietly(*, redis: Redis, run_id: str, value: str) -> None:
    try:
        await run_protocol.release_lease(redis=redis, run_id=run_id, value=value)
    except RedisError:
        log.warning("could not release the lease of a failed claim", extra={"run_id": run_id})


# The new attempt, with what it resumes from: the history up to and including
# this run (without the user messages of other runs still in flight, see
# `conversations`) and the run's checkpoints, in the orders the runner expects.
NEW_ATTEMPT = """
    WITH claimed AS (
        UPDATE runs SET attempts = attempts + 1, status = 'running',
            started_at = coalesce(started_at, now()), heartbeat_at = now(),
            attempt_traceparent = $2
        WHERE id = $1 AND status IN ('queued', 'running')
        RETURNING *
    )
    SELECT claimed.*,
        (SELECT coalesce(json_agg(json_build_object(
                    'role', m.role, 'content', m.content, 'run_id', m.run_id,
                    'token_count', m.token_count, 'cost_usd', m.cost_usd,
                    'created_at', m.created_at) ORDER BY m.run_seq, m.idx), '[]')
         FROM messages m JOIN runs r ON r.id = m.run_id
         WHERE m.conversation_id = claimed.conversation_id AND m.run_seq <= claimed.seq
           AND (r.id = claimed.id OR r.status NOT IN ('queued', 'running'))) AS history,
        (SELECT coalesce(json_agg(json_build_object(
                    'step', c.step, 'kind', c.kind, 'call_index', c.call_index,
                    'attempt', c.attempt, 'payload', c.payload)
                    ORDER BY c.step, c.kind, c.call_index), '[]')
         FROM run_checkpoints c WHERE c.run_id = claimed.id) AS checkpoints
    FROM claimed
"""


async def _new_attempt(*, db: Database, run_id: str) -> ClaimOut:
    async with db.connection() as conn:  # one statement: its own transaction
        row = await conn.fetchrow(NEW_ATTEMPT, run_id, tracing.traceparent())
    if row is None:  # finished or cancelled since we looked
        raise checkpoints.terminal("finished")
    return ClaimOut.model_validate(
        {
            "run": rows.run_out(row),
            "attempt": row["attempts"],
            "history": row["history"],
            "checkpoints": row["checkpoints"],
        }
    )


async def _after_finish(
    *, redis: Redis, run: RunOut, attempt: int, calls: RedisCalls | None
) -> None:
    """The Redis side of a finish: the history cache, the marker and this attempt's lease."""
    await cache.invalidate(redis=redis, conversation_id=run.conversation_id, calls=calls)
    await run_protocol.release_finished(
        redis=redis, run_id=run.run_id, attempt=attempt, calls=calls
    )


# Finishing the current attempt of a run still going, in one statement: its
# status and cost, its transcript after the messages it already has, the
# conversation's `updated_at` (the row lock the hand-off needs, taken here in
# the documented order: run row, then conversation row), and its ledger row.
# No row: not the current attempt, or already finished (the caller looks).
FINISH = """
    WITH finished AS (
        UPDATE runs SET status = $3, error = $4, cost_usd = $5, finished_at = now(),
            heartbeat_at = now()
        WHERE id = $1 AND attempts = $2::int AND status IN ('queued', 'running')
        RETURNING *
    ),
    transcript AS (
        INSERT INTO messages (conversation_id, run_id, run_seq, idx, role, content,
                              token_count, cost_usd)
        SELECT f.conversation_id, f.id, f.seq, n.first + e.ord - 1, e.msg->>'role',
               e.msg->'content', (e.msg->>'token_count')::int, (e.msg->>'cost_usd')::numeric
        FROM finished f,
             (SELECT coalesce(max(idx), -1) + 1 AS first FROM messages WHERE run_id = $1) n,
             jsonb_array_elements($6::jsonb) WITH ORDINALITY AS e(msg, ord)
    ),
    touched AS (
        UPDATE conversations SET updated_at = now()
        WHERE id IN (SELECT conversation_id FROM finished)
    ),
    ledger AS (
        INSERT INTO cost_ledger (user_id, run_id, model, input_tokens, output_tokens, cost_usd)
        SELECT user_id, id, model, $7::int, $8::int, $5 FROM finished
    )
    SELECT * FROM finished
"""


async def _finish(
    *, conn: asyncpg.Connection, run_id: str, fin: FinishIn
) -> tuple[asyncpg.Record, asyncpg.Record | None]:
    """In the caller's transaction: (the run, the run handed its conversation or None)."""
    row = await conn.fetchrow(
        FINISH,
        run_id,
        fin.attempt,
        fin.status,
        fin.error,
        rows.numeric(fin.cost_usd),
        [m.model_dump() for m in fin.messages],
        fin.input_tokens,
        fin.output_tokens,
    )
    if row is not None:
        # The next deferred run of the conversation, if any, becomes active.
        # FINISH locked the conversation's row: the hand-off's statement sees what
        # committed before that lock was granted.
        promoted = await handoff.promote_next(
            conn=conn, conversation_id=row["conversation_id"], locked=True
        )
        return row, promoted
    row = await conn.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
    if row is None:
        raise ids.not_found("run")
    if fin.attempt != row["attempts"]:
        raise checkpoints.stale_attempt(fin.attempt, row["attempts"])
    if row["status"] not in TERMINAL_STATUSES:  # it changed twice under us: never seen
        raise ApiError(503, "the run changed while it was being finished; retry")
    return row, None  # a retried finish: the run unchanged


async def finish_run(
    *, db: Database, redis: Redis, run_id: str, fin: FinishIn, calls: RedisCalls | None = None
) -> RunOut:
    """`calls`: the process's coalesced Redis calls, for the Redis side."""
    ids.require(run_id, "run")
    async with db.transaction() as conn:
        row, promoted = await _finish(conn=conn, run_id=run_id, fin=fin)
    run = rows.run_out(row)
    log.debug("run finished", extra={"run_id": run_id, "status": run.status})
    await best_effort(
        _after_finish(redis=redis, run=run, attempt=fin.attempt, calls=calls),
        what="cache invalidation and lease release after finish",
        run_id=run_id,
    )
    await handoff.enqueue_promoted(redis=redis, promoted=promoted)
    return run
