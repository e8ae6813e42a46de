"""Key revocation reaches every replica's auth cache within moments, not the TTL.

State announces each revoked key id on Redis pub/sub; each gateway (and events
process) runs a `relay_core.auth.RevocationListener` that drops the key from
its cache. Pub/sub delivers at most once, so a listener that lost its
connection drops its whole cache when it subscribes again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from relay_core.auth import Authenticator, RevocationListener
from relay_core.errors import ApiError

LONG_TTL_S = 60.0  # far longer than any deadline below: only the listener can explain a 401


async def test_a_key_revoked_in_state_is_refused_at_once_despite_the_cache(
    make_gateway: Any, state_service: Any, state_client: Any, new_user: Any, poll: Any
) -> None:
    alice = await new_user()
    async with make_gateway(state_service.url, auth_cache_ttl_s=LONG_TTL_S) as gw:
        assert (await gw.get("/v1/runs", headers=alice.auth)).status_code == 200  # cached

        async def refused() -> bool:
            return (await gw.get("/v1/runs", headers=alice.auth)).status_code == 401

        await poll(lambda: _ok(gw, alice), timeout_s=5, what="the listener to be up")
        await state_client.revoke_key(alice.key_id)  # not through this gateway
        took = await poll(refused, timeout_s=3, what="the replica to refuse the revoked key")
        assert took < 2.0


async def _ok(gw: Any, user: Any) -> bool:
    return (await gw.get("/v1/runs", headers=user.auth)).status_code == 200


async def _refused(auth: Authenticator, api_key: str) -> bool:
    try:
        await auth.authenticate(f"Bearer {api_key}")
    except ApiError as exc:
        return exc.status == 401
    return False


async def test_a_listener_that_lost_redis_forgets_everything_when_back(
    redis: Any, state_client: Any, new_user: Any, poll: Any
) -> None:
    alice, bob = await new_user(), await new_user()
    auth = Authenticator(state_client, ttl_s=LONG_TTL_S)
    listener = RevocationListener(redis, auth, poll_s=0.2, retry_s=1.0)
    listener.start()
    try:
        await asyncio.wait_for(listener.subscribed.wait(), timeout=5)
        for user in (alice, bob):
            assert (await auth.authenticate(f"Bearer {user.api_key}")).user_id == user.user_id

        before = listener.subscriptions
        await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

        async def subscribed_again() -> bool:
            return listener.subscriptions > before

        # redis-py reconnects and re-subscribes by itself; the listener drops its cache.
        await poll(subscribed_again, timeout_s=5, what="the listener to subscribe again")
        # Announced while nobody listens: this message is lost for good.
        await state_client.revoke_key(alice.key_id)
        await poll(lambda: _refused(auth, alice.api_key), timeout_s=5, what="alice refused")
        assert listener.subscribed.is_set()
        # Only the revoked key is refused; bob is verified again and still works.
        assert (await auth.authenticate(f"Bearer {bob.api_key}")).user_id == bob.user_id
    finally:
        await listener.stop()


async def test_forget_key_id_drops_only_that_key(state_client: Any, new_user: Any) -> None:
    alice, bob = await new_user(), await new_user()
    auth = Authenticator(state_client, ttl_s=LONG_TTL_S)
    for user in (alice, bob):
        await auth.authenticate(f"Bearer {user.api_key}")
    await state_client.revoke_key(alice.key_id)
    await state_client.revoke_key(bob.key_id)
    # Both revoked in state, both still cached: forgetting one refuses only that one.
    assert auth.forget_key_id(alice.key_id) == 1
    assert await _refused(auth, alice.api_key)
    assert (await auth.authenticate(f"Bearer {bob.api_key}")).user_id == bob.user_id


async def test_revoking_through_the_gateway_reaches_another_replica(
    gateway: Any, make_gateway: Any, state_service: Any, new_user: Any, poll: Any
) -> None:
    admin, alice = await new_user(role="admin"), await new_user()
    async with make_gateway(state_service.url, auth_cache_ttl_s=LONG_TTL_S) as replica:
        await poll(lambda: _ok(replica, alice), timeout_s=5, what="alice cached on the replica")
        resp = await gateway.delete(f"/v1/admin/keys/{alice.key_id}", headers=admin.auth)
        assert resp.status_code == 204

        async def refused() -> bool:
            return (await replica.get("/v1/runs", headers=alice.auth)).status_code == 401

        assert await poll(refused, timeout_s=3, what="the replica to refuse the key") < 2.0
