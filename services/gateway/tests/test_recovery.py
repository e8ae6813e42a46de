"""A dead dependency is a fast 503 with a reason, and the gateway recovers by itself.

Each test owns the process it stops: its own state service, or its own Redis.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from relay_core import state_api
from relay_core.config import DEV_INTERNAL_TOKEN
from relay_core.state_client import StateClient
from relay_devstack.servers import RedisServer


async def new_key(state_url: str) -> dict[str, str]:
    client = StateClient(state_url, DEV_INTERNAL_TOKEN)
    try:
        created = await client.create_key(state_api.CreateKeyIn(user_id=f"u-{uuid.uuid4().hex}"))
    finally:
        await client.aclose()
    return {"Authorization": f"Bearer {created.api_key}"}


async def timed(coro: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = await coro
    return result, time.monotonic() - started


async def test_state_down_is_fast_503_then_recovers(
    start_state: Any, make_gateway: Any, poll: Any
) -> None:
    state = start_state()
    auth = await new_key(state.url)
    async with make_gateway(state.url, auth_cache_ttl_s=0.3) as gw:
        assert (await gw.post("/v1/runs", json={"message": "a"}, headers=auth)).status_code == 202
        await asyncio.to_thread(state.stop)

        resp, took = await timed(gw.post("/v1/runs", json={"message": "b"}, headers=auth))
        assert resp.status_code == 503 and took < 2.5
        assert resp.json()["error"]["reason"] == "state_unavailable"
        await asyncio.sleep(0.4)  # past the auth cache: verification itself now fails
        resp, took = await timed(gw.get("/v1/runs", headers=auth))
        assert resp.status_code == 503 and took < 2.5
        assert resp.json()["error"]["reason"] == "state_unavailable"
        ready = await gw.management.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["reason"] == "state_unavailable"
        assert (await gw.management.get("/healthz")).status_code == 200

        await asyncio.to_thread(state.start)  # same port

        async def accepted() -> bool:
            resp = await gw.post("/v1/runs", json={"message": "c"}, headers=auth)
            return resp.status_code == 202

        await poll(accepted, timeout_s=10, what="submissions to work again")
        assert (await gw.management.get("/readyz")).status_code == 200


async def test_redis_down_is_fast_503_then_recovers(
    start_state: Any, make_gateway: Any, poll: Any, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        state = start_state(redis_url=redis.url)
        auth = await new_key(state.url)
        async with make_gateway(state.url, redis_url=redis.url) as gw:
            first = await gw.post("/v1/runs", json={"message": "a"}, headers=auth)
            assert first.status_code == 202
            await asyncio.to_thread(redis.stop)

            resp, took = await timed(gw.post("/v1/runs", json={"message": "b"}, headers=auth))
            assert resp.status_code == 503 and took < 2.5
            assert resp.json()["error"]["reason"] == "redis_unavailable"
            # reads do not need Redis (the rate limit fails open)
            run = await gw.get(f"/v1/runs/{first.json()['run_id']}", headers=auth)
            assert run.status_code == 200
            ready = await gw.management.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["redis"] == "down"

            redis = RedisServer(redis.data_dir, port=redis.port)
            await asyncio.to_thread(redis.start)

            async def accepted() -> bool:
                resp = await gw.post("/v1/runs", json={"message": "c"}, headers=auth)
                return resp.status_code == 202

            await poll(accepted, timeout_s=10, what="submissions to work again")
    finally:
        redis.stop()
