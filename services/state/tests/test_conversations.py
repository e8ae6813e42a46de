"""Transcripts and the history cache (fill, ownership on a hit, invalidation, Redis down)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import cast

import pytest
from redis.asyncio import Redis

from relay_core import keys as redis_keys
from relay_core.state_api import CreateRunIn, FinishIn, NewMessage
from relay_core.state_client import NotFound, StateClient, StateUnavailable
from relay_devstack.procs import free_port
from relay_state import cache

from .conftest import TOKEN, ServerThread, make_settings

NewRun = Callable[..., CreateRunIn]


async def test_history_cache_is_filled_then_invalidated_by_writes(
    client: StateClient, redis: Redis, new_run: NewRun
) -> None:
    run, _ = await client.create_run(new_run(message="one"))
    key = redis_keys.conv_messages(run.conversation_id)
    # Creating the run invalidated (tombstoned) the entry; a read after the
    # tombstone expires fills it.
    await redis.delete(key)
    first = await client.messages(run.conversation_id, user_id="alice")
    cached = json.loads(cast(str, await redis.get(key)))
    assert cached["user_id"] == "alice"
    assert [m["content"] for m in cached["messages"]] == [[{"type": "text", "text": "one"}]]
    assert 0 < await redis.ttl(key) <= 3600

    # A hit is served from the cache: what is there is what comes back.
    cached["messages"][0]["content"] = [{"type": "text", "text": "from the cache"}]
    await redis.set(key, json.dumps(cached))
    hit = await client.messages(run.conversation_id, user_id="alice")
    assert hit.messages[0].content[0]["text"] == "from the cache"
    with pytest.raises(NotFound):  # ownership holds on a hit too
        await client.messages(run.conversation_id, user_id="bob")

    claim = await client.claim_run(run.run_id, consumer="runner-a")
    answer = NewMessage(role="assistant", content=[{"type": "text", "text": "two"}])
    await client.finish_run(
        run.run_id, FinishIn(attempt=claim.attempt, status="succeeded", messages=[answer])
    )
    assert await redis.get(key) == cache.TOMBSTONE
    after = await client.messages(run.conversation_id, user_id="alice")
    assert [m.content[0]["text"] for m in after.messages] == ["one", "two"]
    assert first.messages[0].content[0]["text"] == "one"

    await redis.delete(key)
    await client.messages(run.conversation_id, user_id="alice")
    assert json.loads(cast(str, await redis.get(key)))["user_id"] == "alice"
    await client.create_run(new_run(message="three", conversation_id=run.conversation_id))
    assert await redis.get(key) == cache.TOMBSTONE


async def test_a_late_fill_does_not_overwrite_an_invalidation(redis: Redis) -> None:
    """A reader that loaded old history before a write must not cache it after it."""
    conversation_id = "conv_late_fill"
    await cache.invalidate(redis=redis, conversation_id=conversation_id)
    await cache.fill(
        redis=redis, conversation_id=conversation_id, user_id="alice", messages=[], ttl_s=60
    )
    assert await cache.read(redis=redis, conversation_id=conversation_id) is None
    assert await redis.get(redis_keys.conv_messages(conversation_id)) == cache.TOMBSTONE


async def test_redis_down_serves_from_postgres_and_still_accepts_runs(
    database_url: str, start_state: Callable[..., ServerThread], new_run: NewRun
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    state = start_state(make_settings(database_url, dead_redis, dependency_timeout_s=0.5))
    client = StateClient(state.base_url, TOKEN, timeout_s=10)
    try:
        run, created = await client.create_run(new_run(message="durable"))
        assert created and run.status == "queued"
        transcript = await client.messages(run.conversation_id, user_id="alice")
        assert transcript.messages[0].content[0]["text"] == "durable"
        cancelled = await client.cancel_run(run.run_id, user_id="alice")
        assert cancelled.status == "cancelled"
        other, _ = await client.create_run(new_run())
        with pytest.raises(StateUnavailable) as err:  # no lease without Redis
            await client.claim_run(other.run_id, consumer="runner-a")
        assert "redis" in str(err.value)
        assert not await client.ready()
    finally:
        await client.aclose()


async def test_a_hung_redis_does_not_hold_answers_about_durable_writes(
    database_url: str, start_state: Callable[..., ServerThread], new_run: NewRun
) -> None:
    """A Redis that accepts connections and never answers: Postgres still answers in time."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)  # never accepted: connects complete, nothing is ever read
        url = f"redis://127.0.0.1:{hung.getsockname()[1]}/0"
        state = start_state(make_settings(database_url, url))
        client = StateClient(state.base_url, TOKEN, timeout_s=10)
        try:
            started = time.monotonic()
            run, created = await client.create_run(new_run(message="durable"))
            assert created
            assert time.monotonic() - started < 1.5  # within a caller's 2 s timeout
            started = time.monotonic()
            transcript = await client.messages(run.conversation_id, user_id="alice")
            assert transcript.messages[0].content[0]["text"] == "durable"
            assert time.monotonic() - started < 1.5
        finally:
            await client.aclose()
