"""`relay_core.auth` against a real `relay-state` process (and real Redis, Postgres).

Regressions:

- Single flight. A burst of 200 requests with one API key on a cold cache made
  ~300 calls to state's POST /internal/v1/keys/verify (a benchmark saw 299).
  Concurrent verifications of one key now share one call; the calls are
  counted on state's own `/metrics` (requests by route).
- Missed revocations after a silent reconnect. With redis-py's asyncio retry
  (relay_core.redis) a pubsub connection reconnects and re-subscribes by
  itself after a Redis restart, so the `RevocationListener`, which dropped its
  cache only when it saw the connection fail, kept serving a key revoked
  while it was disconnected until the TTL ran out. It now drops the cache on
  every subscribe confirmation.
- Wrong keys were free (issue 17): the cache evicts least recently used entries
  (wrong keys apart from valid ones) instead of clearing all, repeats of one
  wrong key are answered from a negative cache, and failed authentications
  are throttled per client address while a valid key keeps working.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay_core import keys
from relay_core import state_api as api
from relay_core.auth import Authenticator, RevocationListener
from relay_core.auththrottle import AuthThrottle, client_bucket
from relay_core.config import DEV_INTERNAL_TOKEN
from relay_core.errors import ApiError
from relay_core.redis import create_redis
from relay_core.state_client import StateClient
from relay_devstack.servers import RedisServer

VERIFY_ROUTE = f"{api.INTERNAL_PREFIX}/keys/verify"
LONG_TTL_S = 60.0  # far beyond every deadline here: only a dropped cache explains a 401
BURST = 50


@pytest.fixture
async def state(state_url: str) -> AsyncIterator[StateClient]:
    client = StateClient(state_url, DEV_INTERNAL_TOKEN)
    yield client
    await client.aclose()


@dataclass(frozen=True)
class Key:
    user_id: str
    key_id: str
    bearer: str


async def new_key(state: StateClient) -> Key:
    user_id = f"u-{uuid.uuid4().hex[:10]}"
    created = await state.create_key(api.CreateKeyIn(user_id=user_id, role="user", name="test"))
    return Key(user_id, created.key_id, f"Bearer {created.api_key}")


async def verify_calls(metrics_url: str) -> int:
    """How many verify requests state has answered (any status), from its /metrics
    (on its management port)."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(metrics_url)).text
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "relay_state_requests_total"
            and sample.labels.get("route") == VERIFY_ROUTE
        )
    )


async def verify_calls_since(metrics_url: str, before: int, *, at_least: int) -> int:
    """Verify requests counted since `before`, once at least `at_least` (or 5 s passed).

    State counts a request as its response ends, so a count read right after
    the answer arrived may lag by the last requests.
    """
    deadline = time.monotonic() + 5.0
    while True:
        calls = await verify_calls(metrics_url) - before
        if calls >= at_least or time.monotonic() > deadline:
            return calls
        await asyncio.sleep(0.02)


async def status_of(auth: Authenticator, bearer: str) -> int:
    try:
        await auth.authenticate(bearer)
    except ApiError as exc:
        return exc.status
    return 200


async def poll(probe: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


# Single flight


async def test_concurrent_verifications_of_one_key_make_one_call(
    state: StateClient, state_metrics_url: str
) -> None:
    key = await new_key(state)
    auth = Authenticator(state, ttl_s=LONG_TTL_S)
    before = await verify_calls(state_metrics_url)
    principals = await asyncio.gather(*(auth.authenticate(key.bearer) for _ in range(BURST)))
    assert {p.user_id for p in principals} == {key.user_id}
    assert await verify_calls_since(state_metrics_url, before, at_least=1) == 1
    await auth.authenticate(key.bearer)  # and then it is cached
    assert await verify_calls_since(state_metrics_url, before, at_least=1) == 1


async def test_concurrent_attempts_with_an_unknown_key_make_one_call(
    state: StateClient, state_metrics_url: str
) -> None:
    auth = Authenticator(state, ttl_s=LONG_TTL_S)
    before = await verify_calls(state_metrics_url)
    bogus = f"Bearer rk_{uuid.uuid4().hex}"
    statuses = await asyncio.gather(*(status_of(auth, bogus) for _ in range(BURST)))
    assert statuses == [401] * BURST
    assert await verify_calls_since(state_metrics_url, before, at_least=1) == 1


@dataclass
class HangUp:
    """A dead state: accepts each connection, reads the request, closes without answering."""

    url: str = ""
    connections: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> HangUp:
        self.server = await asyncio.start_server(self._hang_up, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _hang_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.read(65536)
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_failed_verification_reaches_every_waiter_and_is_not_cached() -> None:
    dead = await HangUp().start()
    state = StateClient(dead.url, DEV_INTERNAL_TOKEN)
    auth = Authenticator(state, ttl_s=LONG_TTL_S)
    bearer = f"Bearer rk_{uuid.uuid4().hex}"
    try:
        outcomes = await asyncio.gather(
            *(auth.authenticate(bearer) for _ in range(BURST)), return_exceptions=True
        )
        assert all(isinstance(o, ApiError) for o in outcomes), outcomes
        errors = [o for o in outcomes if isinstance(o, ApiError)]
        assert {(e.status, e.reason) for e in errors} == {(503, "state_unavailable")}
        assert dead.connections == 1
        # Not cached: the next request asks state again.
        assert await status_of(auth, bearer) == 503
        assert dead.connections == 2
    finally:
        await state.aclose()
        await dead.stop()


async def test_a_cancelled_waiter_does_not_cancel_the_call_for_the_others(
    state: StateClient, state_metrics_url: str
) -> None:
    key = await new_key(state)
    auth = Authenticator(state, ttl_s=LONG_TTL_S)
    before = await verify_calls(state_metrics_url)
    gone = asyncio.create_task(auth.authenticate(key.bearer))
    staying = asyncio.create_task(auth.authenticate(key.bearer))
    await asyncio.sleep(0)  # both are now waiting on the one call, which has not finished
    assert not gone.done() and not staying.done()
    gone.cancel()
    assert (await staying).user_id == key.user_id
    assert gone.cancelled()
    assert await verify_calls_since(state_metrics_url, before, at_least=1) == 1


async def test_a_verification_in_flight_when_the_cache_is_dropped_is_not_cached(
    state: StateClient, state_metrics_url: str
) -> None:
    key = await new_key(state)
    auth = Authenticator(state, ttl_s=LONG_TTL_S)
    before = await verify_calls(state_metrics_url)
    first = asyncio.create_task(auth.authenticate(key.bearer))
    await asyncio.sleep(0)  # the call is in flight (it may predate a revocation)
    auth.forget_key_id(key.key_id)
    assert (await first).user_id == key.user_id  # its waiter still gets the answer
    await auth.authenticate(key.bearer)  # but it was not cached: state is asked again
    assert await verify_calls_since(state_metrics_url, before, at_least=2) == 2


# Revocations and a Redis restart


async def test_a_revocation_missed_during_a_redis_restart_is_not_served_from_cache(
    state: StateClient, relay_tmp: Path
) -> None:
    server = RedisServer(relay_tmp / f"auth-redis-{uuid.uuid4().hex[:6]}").start()
    redis = create_redis(server.url)
    auth = Authenticator(state, ttl_s=LONG_TTL_S)
    listener = RevocationListener(redis, auth, poll_s=0.2, retry_s=0.2)
    listener.start()
    try:
        await asyncio.wait_for(listener.subscribed.wait(), timeout=5)
        alice, bob = await new_key(state), await new_key(state)
        assert (await auth.authenticate(alice.bearer)).user_id == alice.user_id
        # State announces it on its own Redis, which this listener does not hear:
        # as lost as an announcement made while the listener was disconnected.
        await state.revoke_key(alice.key_id)
        assert await status_of(auth, alice.bearer) == 200  # still served from the cache

        subscriptions = listener.subscriptions
        await asyncio.to_thread(server.restart)

        async def alice_refused() -> bool:
            return await status_of(auth, alice.bearer) == 401

        await poll(alice_refused, timeout_s=5, what="the cache to be dropped after the restart")
        assert listener.subscriptions > subscriptions

        # The subscription redis-py re-established is live: an announcement is heard.
        assert await status_of(auth, bob.bearer) == 200
        await state.revoke_key(bob.key_id)
        assert await status_of(auth, bob.bearer) == 200  # cached
        await redis.publish(keys.revoked_keys(), bob.key_id)

        async def bob_refused() -> bool:
            return await status_of(auth, bob.bearer) == 401

        await poll(bob_refused, timeout_s=5, what="bob's revocation to reach the listener")
    finally:
        await listener.stop()
        await redis.aclose()
        server.stop()


# Wrong keys (issue 17: 12,000 distinct wrong keys each cost state a query, and
# past 10,000 cache entries the whole cache, valid keys included, was dropped)


def wrong_bearer() -> str:
    return f"Bearer rk_{uuid.uuid4().hex}{uuid.uuid4().hex}"


async def test_a_flood_of_wrong_keys_does_not_evict_a_valid_key(
    state: StateClient, state_metrics_url: str
) -> None:
    key = await new_key(state)
    auth = Authenticator(state, ttl_s=LONG_TTL_S, max_entries=20)
    assert (await auth.authenticate(key.bearer)).user_id == key.user_id
    for _ in range(60):  # three times the cache's size
        assert await status_of(auth, wrong_bearer()) == 401
    before = await verify_calls(state_metrics_url)
    assert (await auth.authenticate(key.bearer)).user_id == key.user_id
    assert await verify_calls_since(state_metrics_url, before, at_least=0) == 0


async def test_a_wrong_key_repeated_is_answered_from_the_negative_cache(
    state: StateClient, state_metrics_url: str
) -> None:
    auth = Authenticator(state, ttl_s=LONG_TTL_S, negative_ttl_s=LONG_TTL_S)
    wrong = wrong_bearer()
    before = await verify_calls(state_metrics_url)
    assert [await status_of(auth, wrong) for _ in range(5)] == [401] * 5
    assert await verify_calls_since(state_metrics_url, before, at_least=1) == 1


async def test_failed_authentications_are_throttled_per_address_valid_keys_still_work(
    state: StateClient, state_metrics_url: str, redis_url: str
) -> None:
    redis = create_redis(redis_url)
    address = f"198.51.100.{uuid.uuid4().int % 250}"
    throttle = AuthThrottle(redis, failures_per_min=5)
    auth = Authenticator(state, ttl_s=0.0, throttle=throttle)  # every use goes back to state
    try:
        key = await new_key(state)
        assert (await auth.authenticate(key.bearer, address)).user_id == key.user_id
        statuses = [await status_of_from(auth, wrong_bearer(), address) for _ in range(20)]
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 15, statuses
        # A key this replica verified before still works from the throttled address
        # (its cache entry expired: it is asked of state again, not refused) ...
        assert (await auth.authenticate(key.bearer, address)).user_id == key.user_id
        # ... one never seen waits like a wrong one; from another address it works.
        fresh = await new_key(state)
        assert await status_of_from(auth, fresh.bearer, address) == 429
        assert (await auth.authenticate(fresh.bearer, "192.0.2.1")).user_id == fresh.user_id
    finally:
        await redis.aclose()


async def status_of_from(auth: Authenticator, bearer: str, client: str) -> int:
    try:
        await auth.authenticate(bearer, client)
    except ApiError as exc:
        return exc.status
    return 200


def test_ipv6_clients_are_counted_per_64() -> None:
    assert client_bucket("2001:db8:1:2:3:4:5:6") == client_bucket("2001:db8:1:2:ffff::1")
    assert client_bucket("2001:db8:1:2::1") != client_bucket("2001:db8:1:3::1")
    assert client_bucket("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_bucket(None) == "unknown"
