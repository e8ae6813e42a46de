"""`GET /v1/admin/overview`: pools, breakers, kill switch and today's spend, for
`relay top` and the web console; read from the same Redis keys runners write."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from relay_core import keys, partitions
from relay_core.capacity import PoolCapacity
from relay_core.config import DEV_INTERNAL_TOKEN
from relay_core.state_api import CreateKeyIn
from relay_core.state_client import StateClient
from relay_devstack.rediscluster import each_server

CONSUMER = "overview-test-runner"


def pool(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in body["pools"] if p["pool"] == name)


async def overview(gateway: Any, admin: Any) -> dict[str, Any]:
    resp = await gateway.get("/v1/admin/overview", headers=admin.auth)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_overview_counts_lag_in_flight_capacity_and_breakers(
    gateway: Any, new_user: Any, redis: Any
) -> None:
    admin, alice = await new_user(role="admin"), await new_user()
    streams = [keys.queue("background", p) for p in range(partitions.count())]
    for stream in streams:
        await redis.xgroup_create(stream, keys.RUNNERS_GROUP, id="$", mkstream=True)
    breaker = keys.breaker("anthropic", "sim-fallback")
    capacity = PoolCapacity(redis, "background")
    try:
        await capacity.advertise(CONSUMER, 7, ttl_s=30)
        before = pool(await overview(gateway, admin), "background")
        submitted = [
            await gateway.post("/v1/runs", json={"message": f"m{i}"}, headers=alice.auth)
            for i in range(3)
        ]
        queued = pool(await overview(gateway, admin), "background")
        assert queued["queue_lag"] == before["queue_lag"] + 3
        assert queued["capacity"] == before["capacity"] >= 7

        # a "runner" takes one: one less lagging, one more in flight
        stream = keys.run_queue("background", submitted[0].json()["run_id"])
        await redis.xreadgroup(keys.RUNNERS_GROUP, CONSUMER, {stream: ">"}, count=1)
        await redis.hset(breaker, mapping={"state": "open", "open_until": 0})
        body = await overview(gateway, admin)
        taken = pool(body, "background")
        assert taken["queue_lag"] == queued["queue_lag"] - 1
        assert taken["in_flight"] == queued["in_flight"] + 1
        states = {b["model"]: b for b in body["breakers"]}
        assert states["sim-fallback"]["state"] == "open"
        assert states["sim-default"]["state"] in ("closed", "half_open", "open")
        assert states["sim-fallback"]["provider"] == "anthropic"
        assert body["kill_switch"] in (True, False)
        assert body["spend_today"]["day"] == datetime.now(UTC).date().isoformat()
        assert body["spend_today"]["cost_usd"] >= 0
    finally:
        await capacity.withdraw(CONSUMER)
        await redis.delete(breaker)
        for stream in streams:
            await redis.xgroup_destroy(stream, keys.RUNNERS_GROUP)


async def subscribers(redis: Any) -> int:
    """Subscribers of the revocation channel (on every node: PUBSUB NUMSUB is per node)."""
    total = 0
    async for server in each_server(redis):
        counts = await server.pubsub_numsub(keys.revoked_keys())
        total += int(counts[0][1]) if counts else 0
    return total


async def test_overview_without_state_still_shows_the_live_figures(
    make_gateway: Any, start_state: Any, redis: Any, poll: Any
) -> None:
    """State down blanks only the spend: an operator needs the rest most then."""
    own_state = start_state()
    listening = await subscribers(redis)
    async with make_gateway(own_state.url, auth_cache_ttl_s=60.0) as gateway:

        async def listener_subscribed() -> bool:  # its subscription drops the auth cache
            return await subscribers(redis) > listening

        await poll(listener_subscribed, timeout_s=10, what="the revocation listener")
        client = StateClient(own_state.url, DEV_INTERNAL_TOKEN)
        try:
            key = await client.create_key(CreateKeyIn(user_id="ops", role="admin"))
        finally:
            await client.aclose()
        auth = {"Authorization": f"Bearer {key.api_key}"}
        assert (await gateway.get("/v1/admin/overview", headers=auth)).status_code == 200
        own_state.stop()
        resp = await gateway.get("/v1/admin/overview", headers=auth)  # key cached
        assert resp.status_code == 200, resp.text
        assert resp.json()["spend_today"] is None
        assert {p["pool"] for p in resp.json()["pools"]} == {"background", "interactive"}


async def test_overview_is_403_for_users_and_401_without_a_key(gateway: Any, new_user: Any) -> None:
    alice = await new_user()
    resp = await gateway.get("/v1/admin/overview", headers=alice.auth)
    assert resp.status_code == 403 and resp.json()["error"]["type"] == "forbidden"
    assert (await gateway.get("/v1/admin/overview")).status_code == 401
