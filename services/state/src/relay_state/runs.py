"""Runs: create (idempotent), find a replay, read, list, cancel.

Decisions:

- Creation is one transaction: idempotency check, conversation, run row and
  the user message. The queue entry is written after the commit, best effort:
  the run is durable once committed, and if Redis is down at that moment the
  reconciler enqueues it later (an outbox without an outbox table: the
  `queued` row is the outbox entry, the `enqueued` marker its receipt).
- Idempotency: the (user, key) pair is serialised by a transaction-scoped
  advisory lock, so two concurrent submissions with the same key create one
  run; the same key with a different request body is a 409. `find_replay`
  answers what a retry would be answered with, creating nothing (the
  gateway asks it only when it would otherwise refuse a retry with 429).
- Cancelling a queued run finishes it here (no runner holds it, and none may
  ever start it), including its terminal `done` event; cancelling a running
  run records the request durably and raises the fast-path flag for the runner.
- One active run per conversation (`on_conflict`, see `handoff`): the busy
  check runs after `conversations.ensure` has locked the conversation's row;
  a deferred run is recorded but not enqueued, and cancelling a queued run
  hands its conversation off to the next deferred run in the same transaction.
- The caller may name the new run (`run_id`, so the gateway can admit it
  before it exists); an id already taken is a 409, never a duplicate row.
- Few round trips: the run row and its user message are one statement (data-
  modifying CTEs), and a run that starts a new conversation (the usual
  interactive turn) creates the conversation in that same statement, which
  is then its own transaction: one round trip to Postgres in all. The
  conversation is inserted from the run's RETURNING, so a taken run id leaves
  no conversation behind. An explicit transaction is opened only when the
  statement needs company: an idempotency key (its advisory lock and
  replay lookup) or an existing conversation (its row lock, then the busy
  check, which must see what committed before the lock was granted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Sequence

import asyncpg
from redis.asyncio import Redis

from relay_core import run_protocol, tracing
from relay_core.errors import ApiError
from relay_core.events import TERMINAL_STATUSES
from relay_core.rediscalls import RedisCalls
from relay_core.state_api import CreateRunIn, RunOut, RunPage, RunStatusesOut
from relay_state import cache, conversations, handoff, ids, rows
from relay_state.besteffort import best_effort
from relay_state.db import Database
from relay_state.metrics import RUNS_CREATED

log = logging.getLogger(__name__)


def request_hash(req: CreateRunIn) -> str:
    """What makes two submissions under one idempotency key "the same request"."""
    body = req.model_dump(include={"message", "conversation_id", "model", "max_cost_usd", "kind"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


async def _replay(
    *, conn: asyncpg.Connection, req: CreateRunIn, digest: str
) -> asyncpg.Record | None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        f"{req.user_id}\x1f{req.idempotency_key}",
    )
    row = await conn.fetchrow(
        "SELECT * FROM runs WHERE user_id = $1 AND idempotency_key = $2",
        req.user_id,
        req.idempotency_key,
    )
    if row is not None and row["request_hash"] != digest:
        raise ApiError(
            409,
            "this Idempotency-Key was used for a different request",
            type_="idempotency_conflict",
        )
    return row


async def _deferred(*, conn: asyncpg.Connection, req: CreateRunIn, conversation_id: str) -> bool:
    """Whether the new run waits behind the conversation's active run (409 on reject)."""
    if req.conversation_id is None or req.on_conflict == "allow":
        return False
    if not await handoff.is_busy(conn=conn, conversation_id=conversation_id):
        return False
    if req.on_conflict == "reject":
        raise handoff.busy_error(conversation_id)
    return True


# The run and its user message; both statements below start with it.
_RUN_AND_MESSAGE = """
    WITH run AS (
        INSERT INTO runs (id, user_id, conversation_id, kind, model, max_cost_usd, input,
                          idempotency_key, request_hash, daily_limit_usd, deferred,
                          traceparent)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13)
        ON CONFLICT (id) DO NOTHING
        RETURNING *
    ),
    message AS (
        INSERT INTO messages (conversation_id, run_id, run_seq, idx, role, content)
        SELECT conversation_id, id, seq, 0, 'user', $12::jsonb FROM run
    )"""
INSERT_IN_CONVERSATION = (
    _RUN_AND_MESSAGE  # noqa: S608 (constants only)
    + """
    SELECT * FROM run
"""
)
# The same, plus its new conversation, inserted only if the run was. Foreign
# keys are checked at the end of the statement, when all three rows exist.
INSERT_IN_NEW_CONVERSATION = (
    _RUN_AND_MESSAGE  # noqa: S608 (constants only)
    + """,
    conversation AS (
        INSERT INTO conversations (id, user_id) SELECT conversation_id, user_id FROM run
    )
    SELECT * FROM run
"""
)


async def _insert(
    *, conn: asyncpg.Connection, req: CreateRunIn, digest: str | None
) -> asyncpg.Record:
    """Insert the run and its user message (and its conversation when it starts one)."""
    if req.conversation_id is None:
        query, conversation_id, deferred = INSERT_IN_NEW_CONVERSATION, ids.new_id("conv"), False
    else:
        query = INSERT_IN_CONVERSATION
        conversation_id = await conversations.ensure(
            conn=conn, user_id=req.user_id, conversation_id=req.conversation_id
        )
        deferred = await _deferred(conn=conn, req=req, conversation_id=conversation_id)
    row = await conn.fetchrow(
        query,
        req.run_id or ids.new_id("run"),
        req.user_id,
        conversation_id,
        req.kind,
        req.model,
        rows.numeric(req.max_cost_usd),
        {"message": req.message},
        req.idempotency_key,
        digest,
        rows.numeric(req.daily_limit_usd),
        deferred,
        [{"type": "text", "text": req.message}],
        tracing.traceparent(),  # this request's span: the run's spans start under it
    )
    if row is None:
        raise ApiError(409, "this run id is already taken", type_="conflict", reason="run_id_taken")
    return row


async def _publish_new_run(
    *, redis: Redis, run: RunOut, new_conversation: bool, calls: RedisCalls | None
) -> None:
    if not new_conversation:  # a conversation created just now has no cached history
        await cache.invalidate(redis=redis, conversation_id=run.conversation_id, calls=calls)
    if not run.deferred:  # a deferred run is enqueued by the hand-off
        await run_protocol.enqueue(
            redis=redis, run_id=run.run_id, pool=run.kind, traceparent=run.traceparent, calls=calls
        )


async def create_run(
    *, db: Database, redis: Redis, req: CreateRunIn, calls: RedisCalls | None = None
) -> tuple[RunOut, bool]:
    """The run, and whether it was created now (False: an idempotent replay).
    `calls`: the process's coalesced Redis calls, for the run's queue entry."""
    digest = request_hash(req) if req.idempotency_key is not None else None
    if digest is None and req.conversation_id is None:
        async with db.connection() as conn:  # one statement: its own transaction
            row = await _insert(conn=conn, req=req, digest=None)
    else:
        async with db.transaction() as conn:
            if digest is not None:
                existing = await _replay(conn=conn, req=req, digest=digest)
                if existing is not None:
                    return rows.run_out(existing), False
            row = await _insert(conn=conn, req=req, digest=digest)
    run = rows.run_out(row)
    RUNS_CREATED.labels(kind=run.kind).inc()
    log.debug(  # the gateway logs every accepted run
        "run created", extra={"run_id": run.run_id, "kind": run.kind, "deferred": run.deferred}
    )
    await best_effort(
        _publish_new_run(
            redis=redis, run=run, new_conversation=req.conversation_id is None, calls=calls
        ),
        what="enqueue after commit (the reconciler will enqueue the run)",
        run_id=run.run_id,
    )
    return run, True


async def find_replay(*, db: Database, req: CreateRunIn) -> RunOut:
    """The run `create_run` would answer `req` with as an idempotent replay,
    creating nothing: the user's run under `req`'s key, 404 when there is none,
    409 when it was created by a different request. Owner-scoped by
    construction: the lookup is by (user_id, key). Under the same advisory lock
    as a creation, so a creation of that key in flight is waited for."""
    if req.idempotency_key is None:
        raise ApiError(422, "finding a replay needs an idempotency_key")
    async with db.transaction() as conn:
        row = await _replay(conn=conn, req=req, digest=request_hash(req))
    if row is None:
        raise ids.not_found("run")
    return rows.run_out(row)


async def get_run(*, db: Database, run_id: str, user_id: str | None) -> RunOut:
    """The run; with `user_id`, only if it is that user's (else 404)."""
    ids.require(run_id, "run")
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM runs WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)",
            run_id,
            user_id,
        )
    if row is None:
        raise ids.not_found("run")
    return rows.run_out(row)


async def run_statuses(*, db: Database, run_ids: list[str]) -> RunStatusesOut:
    """Status by id for the ids that name a run (the gateway's leak repair of
    per-user active runs); malformed ids name no run."""
    valid = [run_id for run_id in run_ids if ids.is_valid(run_id)]
    if not valid:
        return RunStatusesOut(statuses={})
    async with db.connection() as conn:
        found = await conn.fetch("SELECT id, status FROM runs WHERE id = ANY($1::text[])", valid)
    return RunStatusesOut(statuses={r["id"]: r["status"] for r in found})


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        text = raw.decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "malformed cursor") from exc
    if not text.isdigit() or len(text) > 18:
        raise ApiError(400, "malformed cursor")
    return int(text)


async def list_runs(
    *,
    db: Database,
    user_id: str,
    limit: int,
    cursor: str | None,
    statuses: Sequence[str] | None = None,
) -> RunPage:
    """The user's runs, newest first (only those in `statuses` when given);
    `cursor` continues after the previous page."""
    before = decode_cursor(cursor) if cursor else None
    async with db.connection() as conn:
        found = await conn.fetch(
            """
            SELECT id, seq, user_id, conversation_id, kind, status, model, max_cost_usd,
                   created_at, started_at, finished_at, attempts, cost_usd, error,
                   cancel_requested_at, daily_limit_usd, deferred, traceparent
            FROM runs
            WHERE user_id = $1 AND ($2::bigint IS NULL OR seq < $2)
              AND ($4::text[] IS NULL OR status = ANY($4::text[]))
            ORDER BY seq DESC LIMIT $3
            """,
            user_id,
            before,
            limit + 1,
            statuses or None,
        )
    page = found[:limit]
    more = len(found) > limit
    return RunPage(
        runs=[rows.run_out(r) for r in page],
        next_cursor=encode_cursor(page[-1]["seq"]) if more else None,
    )


async def cancel_run(
    *, db: Database, redis: Redis, run_id: str, user_id: str, retention_s: float
) -> RunOut:
    ids.require(run_id, "run")
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM runs WHERE id = $1 AND user_id = $2 FOR UPDATE",
            run_id,
            user_id,
        )
        if row is None:
            raise ids.not_found("run")
        if row["status"] in TERMINAL_STATUSES:
            return rows.run_out(row)
        # Right-hand sides see the old row: a queued run is finished here.
        row = await conn.fetchrow(
            """
            UPDATE runs SET
                cancel_requested_at = coalesce(cancel_requested_at, now()),
                status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END
            WHERE id = $1
            RETURNING *
            """,
            run_id,
        )
        promoted = None
        if row["status"] == "cancelled":  # it was queued: its conversation may move on
            promoted = await handoff.promote_next(conn=conn, conversation_id=row["conversation_id"])
    run = rows.run_out(row)
    log.info("run cancel requested", extra={"run_id": run_id, "status": run.status})
    await best_effort(
        _announce_cancel(redis=redis, run=run, retention_s=retention_s),
        what="announcing the cancellation in Redis",
        run_id=run_id,
    )
    await handoff.enqueue_promoted(redis=redis, promoted=promoted)
    return run


async def _announce_cancel(*, redis: Redis, run: RunOut, retention_s: float) -> None:
    await run_protocol.flag_cancel(redis=redis, run_id=run.run_id)
    if run.status == "cancelled":  # no runner will write its `done`
        await run_protocol.write_done(
            redis=redis,
            run_id=run.run_id,
            user_id=run.user_id,
            pool=run.kind,
            status="cancelled",
            cost_usd=run.cost_usd,
            retention_s=retention_s,
        )
