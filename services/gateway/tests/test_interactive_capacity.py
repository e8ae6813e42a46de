"""Interactive capacity: a chat waits for a free runner slot, then gets 429 with
`Retry-After`, never a hang; /healthz and /metrics report the pool's usage.

The gateway runs as a process (a chat is a stream over a real socket) with a
short `RELAY_INTERACTIVE_QUEUE_TIMEOUT_S`, and no runner: the test plays the
runners' side of the capacity contract itself (`PoolCapacity.advertise`, and
an admission it holds and gives back with `run_protocol.release_slots`), so
it decides exactly when a slot frees. The run a
chat creates stays queued; closing the stream cancels it through state, which
gives its slots back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from relay_core import keys, run_protocol
from relay_core.capacity import PoolCapacity
from relay_core.config import DEV_INTERNAL_TOKEN
from relay_gateway import runids

from .conftest import GatewayClient

WAIT_S = 1.5


@pytest.fixture(scope="module")
def gateway_urls(state_service: Any, gw_redis_url: str, stack_factory: Any) -> tuple[str, str]:
    """The gateway process's URL and its management port's."""
    running = stack_factory(
        {
            "gateway": {
                "RELAY_INTERACTIVE_QUEUE_TIMEOUT_S": str(WAIT_S),
                "RELAY_KILL_SWITCH_REFRESH_S": "0.1",
                "RELAY_KEEPALIVE_S": "1",
            }
        },
        services=("gateway",),
        redis_url=gw_redis_url,
        state_url=state_service.url,
        internal_token=DEV_INTERNAL_TOKEN,
        dev_keys=False,
    )
    return str(running.gateway_url), running.management_url("gateway")


@pytest.fixture
async def client(gateway_urls: tuple[str, str]) -> AsyncIterator[GatewayClient]:
    """The gateway's public port; its management port as `client.management`."""
    public, management = gateway_urls
    async with (
        GatewayClient(base_url=public, timeout=30) as http,
        httpx.AsyncClient(base_url=management, timeout=30) as manage,
    ):
        http.management = manage
        yield http


POOL_KEYS = [
    keys.pool_capacity("interactive"),
    keys.pool_admitted("interactive"),
    keys.pool_waiting("interactive"),
    keys.pool_shares("interactive"),
    keys.pool_waiting_alive("interactive"),
]


@pytest.fixture
async def pool(redis: Any) -> AsyncIterator[PoolCapacity]:
    """The interactive pool, empty: no runner, nothing admitted, nobody waiting."""
    await redis.delete(*POOL_KEYS)
    yield PoolCapacity(redis, "interactive")
    await redis.delete(*POOL_KEYS)


async def _admitted(redis: Any) -> set[str]:
    return set(await redis.zrange(keys.pool_admitted("interactive"), 0, -1))


async def test_no_free_slot_waits_then_429_with_retry_after(
    client: GatewayClient, pool: PoolCapacity, new_user: Any, redis: Any
) -> None:
    alice = await new_user()
    await pool.advertise("runner-busy", 1, ttl_s=60)
    assert await pool.try_admit(runids.new_run_id(), max_run_s=60)  # the one slot is taken

    started = time.monotonic()
    resp = await client.post("/v1/chat/stream", json={"message": "hi"}, headers=alice.auth)
    waited = time.monotonic() - started
    assert resp.status_code == 429, resp.text
    assert resp.json()["error"]["reason"] == "interactive_capacity"
    assert int(resp.headers["retry-after"]) >= 1
    assert WAIT_S - 0.1 <= waited < WAIT_S + 3
    # The refused chat holds nothing: no pool slot, no concurrent-run slot, no run.
    assert len(await _admitted(redis)) == 1
    assert await redis.scard(keys.user_active_runs(alice.user_id)) == 0
    assert (await client.get("/v1/runs", headers=alice.auth)).json()["runs"] == []
    metrics = (await client.management.get("/metrics")).text
    assert 'relay_gateway_admissions_refused_total{reason="interactive_capacity"}' in metrics


async def test_a_slot_freed_within_the_wait_admits_the_chat(
    client: GatewayClient, pool: PoolCapacity, new_user: Any, redis: Any, poll: Any
) -> None:
    alice = await new_user()
    await pool.advertise(f"runner-{uuid.uuid4().hex[:6]}", 1, ttl_s=60)
    blocker = runids.new_run_id()
    assert await pool.try_admit(blocker, max_run_s=60)

    async def free_the_slot() -> None:
        await asyncio.sleep(WAIT_S / 3)
        await run_protocol.release_slots(
            redis=redis, run_id=blocker, user_id=None, pool="interactive"
        )

    releasing = asyncio.create_task(free_the_slot())
    started = time.monotonic()
    body = {"message": "hi"}
    async with client.stream("POST", "/v1/chat/stream", json=body, headers=alice.auth) as resp:
        assert resp.status_code == 200
        waited = time.monotonic() - started
        run_id = resp.headers["relay-run-id"]
        assert await _admitted(redis) == {run_id}
        assert WAIT_S / 3 - 0.1 <= waited < WAIT_S

        async def reported() -> bool:
            health = (await client.management.get("/healthz")).json()
            return bool(
                health["interactive_in_flight"] == 1 and health["interactive_capacity"] == 1
            )

        await poll(reported, timeout_s=5, what="/healthz to report 1 of 1 slots in use")
        metrics = (await client.management.get("/metrics")).text
        assert "relay_gateway_interactive_in_flight 1.0" in metrics
        assert "relay_gateway_interactive_capacity 1.0" in metrics
    await releasing

    # The client left: the run is cancelled, and state frees both of its slots.
    async def freed() -> bool:
        user_slots = await redis.scard(keys.user_active_runs(alice.user_id))
        return user_slots == 0 and await _admitted(redis) == set()

    await poll(freed, timeout_s=10, what="the cancelled chat's slots to be freed")
    run = (await client.get(f"/v1/runs/{run_id}", headers=alice.auth)).json()
    assert run["status"] == "cancelled"


async def test_background_runs_take_no_interactive_slot(
    client: GatewayClient, pool: PoolCapacity, new_user: Any, redis: Any
) -> None:
    alice = await new_user()
    resp = await client.post("/v1/runs", json={"message": "later"}, headers=alice.auth)
    assert resp.status_code == 202  # no interactive capacity at all, and no wait
    assert await _admitted(redis) == set()


async def _chat_headers(client: GatewayClient, user: Any, key: str, **body: Any) -> Any:
    """Open a detached chat under `key`, keep its status and headers, and leave."""
    headers = {**user.auth, "Idempotency-Key": key}
    payload = {"message": "hi", "detach": True, **body}
    async with client.stream("POST", "/v1/chat/stream", json=payload, headers=headers) as resp:
        if resp.status_code != 200:
            await resp.aread()
        return resp


async def _cancel_and_wait_freed(
    client: GatewayClient, user: Any, run_id: str, redis: Any, poll: Any
) -> None:
    await client.post(f"/v1/runs/{run_id}/cancel", headers=user.auth)

    async def freed() -> bool:
        user_slots = await redis.scard(keys.user_active_runs(user.user_id))
        return user_slots == 0 and run_id not in await _admitted(redis)

    await poll(freed, timeout_s=10, what="the cancelled chat's slots to be freed")


async def test_a_retry_while_the_pool_is_full_rejoins_its_run_at_once(
    client: GatewayClient, pool: PoolCapacity, new_user: Any, redis: Any, poll: Any
) -> None:
    """The first attempt took the last slot: its retry is the replay (no wait, no
    429); a new chat still waits and gets 429."""
    alice = await new_user()
    await pool.advertise(f"runner-{uuid.uuid4().hex[:6]}", 1, ttl_s=60)
    key = f"k-{uuid.uuid4().hex}"
    first = await _chat_headers(client, alice, key)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    run_id = first.headers["relay-run-id"]
    assert await _admitted(redis) == {run_id}  # the pool is full

    started = time.monotonic()
    again = await _chat_headers(client, alice, key)
    assert again.status_code == 200
    assert time.monotonic() - started < WAIT_S  # it did not wait for a slot
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["relay-run-id"] == run_id
    assert again.headers["relay-events-url"] == first.headers["relay-events-url"]
    assert await _admitted(redis) == {run_id}
    assert await redis.smembers(keys.user_active_runs(alice.user_id)) == {run_id}

    refused = await _chat_headers(client, alice, f"k-{uuid.uuid4().hex}")
    assert refused.status_code == 429
    assert refused.json()["error"]["reason"] == "interactive_capacity"
    conflict = await _chat_headers(client, alice, key, message="something else")
    assert conflict.status_code == 409
    assert await redis.smembers(keys.user_active_runs(alice.user_id)) == {run_id}
    await _cancel_and_wait_freed(client, alice, run_id, redis, poll)


async def test_a_retry_at_the_concurrent_runs_limit_rejoins_its_run(
    client: GatewayClient, pool: PoolCapacity, new_user: Any, redis: Any, poll: Any
) -> None:
    alice = await new_user(max_concurrent_runs=1)
    await pool.advertise(f"runner-{uuid.uuid4().hex[:6]}", 5, ttl_s=60)
    key = f"k-{uuid.uuid4().hex}"
    first = await _chat_headers(client, alice, key)
    assert first.status_code == 200
    run_id = first.headers["relay-run-id"]

    again = await _chat_headers(client, alice, key)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["relay-run-id"] == run_id
    refused = await _chat_headers(client, alice, f"k-{uuid.uuid4().hex}")
    assert refused.status_code == 429
    assert refused.json()["error"]["reason"] == "concurrent_runs"
    assert await _admitted(redis) == {run_id}
    await _cancel_and_wait_freed(client, alice, run_id, redis, poll)
