"""Conversations and their messages: ownership and transcripts.

A conversation's history is its messages ordered by (run_seq, idx): runs in
creation order, and inside a run the user message (idx 0) first, then what
the run wrote at finish. A runner resuming a run gets the history up to and
including that run, without the user messages of other runs still in flight
(their answers do not exist yet, and they are not part of this run's past).
A new conversation is written with its first run (`runs`), a run's history is
read with its claim and its transcript appended with its finish (`attempts`),
each in the statement of that step.
"""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from relay_core.state_api import MessageOut, MessagesOut
from relay_state import cache, ids, rows
from relay_state.db import Database


async def ensure(*, conn: asyncpg.Connection, user_id: str, conversation_id: str) -> str:
    """The user's conversation, its row locked (404 if it is someone else's). A new
    conversation is created with its first run (`runs.INSERT_IN_NEW_CONVERSATION`)."""
    ids.require(conversation_id, "conversation")
    found = await conn.fetchval(
        "UPDATE conversations SET updated_at = now() WHERE id = $1 AND user_id = $2 RETURNING id",
        conversation_id,
        user_id,
    )
    if found is None:
        raise ids.not_found("conversation")
    return conversation_id


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
