"""One active run per conversation: the busy check and the hand-off to the next run.

A conversation is busy while one of its runs is `queued` or `running`. A new
run submitted with `on_conflict="reject"` is then refused (409, reason
`conversation_busy`); with `"enqueue"` it is recorded `queued` and `deferred`:
it is on no Redis queue. When the active run ends (finish, or cancelled while
queued), the same transaction clears the flag of the conversation's oldest
deferred run, which is then enqueued after the commit like a new run (and by
the reconciler if that enqueue is lost).

Decisions:

- Race-free by the conversation's row lock. Creating a run in an existing
  conversation locks its row (`conversations.ensure` updates it) before the
  busy check, and the hand-off locks it before looking for an active run, so
  a submission and a finish in the same conversation are serialised: either
  the new run sees the active one (and is deferred, then handed off), or it
  sees none (and is enqueued at once). Under READ COMMITTED each statement
  after the lock sees what the other transaction committed.
- Lock order is run row, then conversation row, as `finish_run` already
  does when it appends the transcript. The deferred run to promote is picked
  `FOR UPDATE SKIP LOCKED`: the only other transaction that locks a deferred
  run is its own cancellation (which then hands off itself), so waiting for
  it could only deadlock.
"""

from __future__ import annotations

import logging

import asyncpg
from redis.asyncio import Redis

from relay_core import run_protocol
from relay_core.errors import ApiError
from relay_state.besteffort import best_effort

log = logging.getLogger(__name__)


def busy_error(conversation_id: str) -> ApiError:
    return ApiError(
        409,
        f"conversation {conversation_id} already has a run in progress; wait for it to "
        'finish, or submit with "on_conflict": "enqueue" to run after it',
        type_="conflict",
        reason="conversation_busy",
    )


async def is_busy(*, conn: asyncpg.Connection, conversation_id: str) -> bool:
    """Whether the conversation has a run in flight (deferred ones count). Call it
    with the conversation's row locked."""
    return bool(
        await conn.fetchval(
            """
            SELECT EXISTS (SELECT 1 FROM runs
                           WHERE conversation_id = $1 AND status IN ('queued', 'running'))
            """,
            conversation_id,
        )
    )


# The conversation's oldest deferred run made active, unless a run of it is
# still active. One statement, run after the conversation's row is locked.
# (The active-run test is inside the subquery, so no deferred run is locked
# when one is still active.)
PROMOTE = """
    UPDATE runs SET deferred = false
    WHERE id = (SELECT id FROM runs
                WHERE conversation_id = $1 AND deferred AND status = 'queued'
                  AND NOT EXISTS (SELECT 1 FROM runs active WHERE active.conversation_id = $1
                                  AND active.status IN ('queued', 'running')
                                  AND NOT active.deferred)
                ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id, kind, traceparent
"""


async def promote_next(
    *, conn: asyncpg.Connection, conversation_id: str, locked: bool = False
) -> asyncpg.Record | None:
    """In the caller's transaction: when the conversation has no active run left,
    make its oldest deferred run the active one. Returns that run (id, kind), to
    enqueue after the commit, or None. `locked`: the caller's transaction holds
    the conversation's row lock already (taken by an earlier statement)."""
    if not locked:
        await conn.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", conversation_id)
    row: asyncpg.Record | None = await conn.fetchrow(PROMOTE, conversation_id)
    if row is not None:
        log.info("deferred run handed off", extra={"run_id": row["id"]})
    return row


async def enqueue_promoted(*, redis: Redis, promoted: asyncpg.Record | None) -> None:
    """After the commit, best effort: the reconciler enqueues it if this fails."""
    if promoted is None:
        return
    await best_effort(
        run_protocol.enqueue(
            redis=redis,
            run_id=promoted["id"],
            pool=promoted["kind"],
            traceparent=promoted["traceparent"],
        ),
        what="enqueue of a handed-off run (the reconciler will enqueue it)",
        run_id=promoted["id"],
    )
