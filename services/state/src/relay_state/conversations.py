"""Conversations and their messages: ownership, history, transcript appends.

A conversation's history is its messages ordered by (run_seq, idx): runs in
creation order, and inside a run the user message (idx 0) first, then what
the run wrote at finish. A runner resuming a run gets the history up to and
including that run, without the user messages of other runs still in flight
(their answers do not exist yet, and they are not part of this run's past).
"""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from relay_core.state_api import MessageOut, MessagesOut, NewMessage
from relay_state import cache, ids, rows
from relay_state.db import Database


async def ensure(*, conn: asyncpg.Connection, user_id: str, conversation_id: str | None) -> str:
    """The user's conversation (404 if it is someone else's), or a new one."""
    if conversation_id is None:
        new_id = ids.new_id("conv")
        await conn.execute(
            "INSERT INTO conversations (id, user_id) VALUES ($1, $2)", new_id, user_id
        )
        return new_id
    ids.require(conversation_id, "conversation")
    found = await conn.fetchval(
        "UPDATE conversations SET updated_at = now() WHERE id = $1 AND user_id = $2 RETURNING id",
        conversation_id,
        user_id,
    )
    if found is None:
        raise ids.not_found("conversation")
    return conversation_id


async def append(
    *,
    conn: asyncpg.Connection,
    conversation_id: str,
    run_id: str,
    run_seq: int,
    messages: list[NewMessage],
) -> None:
    """Add a run's messages after the ones it already has (idx continues)."""
    if not messages:
        return
    first = await conn.fetchval(
        "SELECT coalesce(max(idx), -1) + 1 FROM messages WHERE run_id = $1", run_id
    )
    await conn.executemany(
        """
        INSERT INTO messages (conversation_id, run_id, run_seq, idx, role, content,
                              token_count, cost_usd)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        [
            (
                conversation_id,
                run_id,
                run_seq,
                first + i,
                m.role,
                m.content,
                m.token_count,
                rows.numeric(m.cost_usd),
            )
            for i, m in enumerate(messages)
        ],
    )
    await conn.execute("UPDATE conversations SET updated_at = now() WHERE id = $1", conversation_id)


async def history_for_run(
    *, conn: asyncpg.Connection, conversation_id: str, run_id: str, run_seq: int
) -> list[MessageOut]:
    found = await conn.fetch(
        """
        SELECT m.role, m.content, m.run_id, m.token_count, m.cost_usd, m.created_at
        FROM messages m JOIN runs r ON r.id = m.run_id
        WHERE m.conversation_id = $1 AND m.run_seq <= $2
          AND (r.id = $3 OR r.status NOT IN ('queued', 'running'))
        ORDER BY m.run_seq, m.idx
        """,
        conversation_id,
        run_seq,
        run_id,
    )
    return [rows.message_out(r) for r in found]


async def _load(*, db: Database, conversation_id: str, user_id: str) -> list[MessageOut]:
    async with db.connection() as conn, conn.transaction(readonly=True):
        owner = await conn.fetchval(
            "SELECT user_id FROM conversations WHERE id = $1", conversation_id
        )
        if owner != user_id:
            raise ids.not_found("conversation")
        found = await conn.fetch(
            """
            SELECT * FROM messages
            WHERE conversation_id = $1 ORDER BY run_seq, idx
            """,
            conversation_id,
        )
    return [rows.message_out(r) for r in found]


async def get_messages(
    *, db: Database, redis: Redis, conversation_id: str, user_id: str, cache_ttl_s: float
) -> MessagesOut:
    """The transcript, from the history cache when it holds it."""
    ids.require(conversation_id, "conversation")
    hit = await cache.read(redis=redis, conversation_id=conversation_id)
    if hit is not None:
        if hit.user_id != user_id:
            raise ids.not_found("conversation")
        return MessagesOut(conversation_id=conversation_id, messages=hit.messages)
    messages = await _load(db=db, conversation_id=conversation_id, user_id=user_id)
    await cache.fill(
        redis=redis,
        conversation_id=conversation_id,
        user_id=user_id,
        messages=messages,
        ttl_s=cache_ttl_s,
    )
    return MessagesOut(conversation_id=conversation_id, messages=messages)
