"""API-key authentication for the public services (gateway, events).

Keys are verified by state, which stores only their hashes. A verified key is
cached here for `ttl_s` seconds (keyed by the key's hash, never the key), so a
revoked key stops working on every replica within that time without a state
round trip on every request. A failed verification is not cached beyond
`negative_ttl_s`, so a key created a moment ago works at once.

Verifications are single flight: concurrent requests with the same key on a
cold cache share one in-flight call to state (a burst of 200 requests with
one key used to make ~300 verify calls). The call runs as a task of its own
that every waiter awaits through `asyncio.shield`, so a client that goes
away cancels only its own wait; a failure (state down: 503) reaches every
waiter and is never cached, so the next request asks state again.

Revocation is faster than the TTL where a `RevocationListener` runs: state
publishes each revoked key id on `relay_core.keys.revoked_keys()`, and the
listener drops that key from the cache at once. Pub/sub delivers at most
once, so whenever the subscription is (re)established the listener drops the
whole cache (a revocation may have gone by while it was not listening). It
acts on the subscribe confirmation, not on seeing the connection fail:
redis-py's asyncio retry reconnects and re-subscribes a pubsub connection by
itself after a Redis restart, and that confirmation is the only trace it
leaves. A forget also detaches verifications in flight (they may predate the
revocation): their result still answers their waiters but is not cached. The
TTL stays the bound when Redis is down.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from relay_core import keys
from relay_core.background import BackgroundLoop
from relay_core.errors import ApiError
from relay_core.redis import ensure_topology
from relay_core.state_api import Principal
from relay_core.state_client import NotFound, StateClient, StateUnavailable

log = logging.getLogger(__name__)

BEARER = "bearer "


def bearer_token(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith(BEARER):
        raise ApiError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = authorization[len(BEARER) :].strip()
    if not token or len(token) > 512:
        raise ApiError(401, "malformed API key", headers={"WWW-Authenticate": "Bearer"})
    return token


class Authenticator:
    def __init__(
        self, state: StateClient, *, ttl_s: float = 5.0, negative_ttl_s: float = 1.0
    ) -> None:
        self._state = state
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._inflight: dict[str, asyncio.Task[Principal | None]] = {}
        self._generation = 0  # bumped by every forget: older verifications are not cached

    async def authenticate(self, authorization: str | None) -> Principal:
        key = bearer_token(authorization)
        digest = hashlib.sha256(key.encode()).hexdigest()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            principal = hit[1]
        else:
            principal = await asyncio.shield(self._verification(key, digest))
        if principal is None:
            raise ApiError(
                401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        return principal

    def forget(self) -> None:
        self._cache.clear()
        self._detach_inflight()

    def forget_key_id(self, key_id: str) -> int:
        """Drop the cached verification of one key (revoked); returns how many went."""
        stale = [
            digest
            for digest, (_, principal) in self._cache.items()
            if principal is not None and principal.key_id == key_id
        ]
        for digest in stale:
            self._cache.pop(digest, None)
        self._detach_inflight()  # which key an in-flight call is for is unknown yet
        return len(stale)

    def _detach_inflight(self) -> None:
        self._generation += 1
        self._inflight.clear()

    def _verification(self, key: str, digest: str) -> asyncio.Task[Principal | None]:
        """The verification of this key in flight, started if there is none."""
        task = self._inflight.get(digest)
        if task is None:
            call = self._verify_and_cache(key, digest, self._generation, time.monotonic())
            task = asyncio.create_task(call, name="verify-api-key")
            task.add_done_callback(_retrieve_exception)
            self._inflight[digest] = task
        return task

    async def _verify_and_cache(
        self, key: str, digest: str, generation: int, started: float
    ) -> Principal | None:
        try:
            principal = await self._verify(key)
        finally:
            if self._inflight.get(digest) is asyncio.current_task():
                del self._inflight[digest]
        if generation == self._generation:  # no forget since the call was asked for
            ttl = self._ttl_s if principal is not None else self._negative_ttl_s
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (started + ttl, principal)
        return principal

    async def _verify(self, key: str) -> Principal | None:
        try:
            return await self._state.verify_key(key)
        except NotFound:
            return None
        except StateUnavailable as exc:
            raise ApiError(
                503, "cannot verify API key: state service unavailable", reason="state_unavailable"
            ) from exc


def _retrieve_exception(task: asyncio.Task[Principal | None]) -> None:
    # Every waiter may have gone (cancelled): mark a failure as seen so asyncio
    # does not log "exception was never retrieved" for it.
    if not task.cancelled():
        task.exception()


class RevocationListener(BackgroundLoop):
    """Subscribes to revoked key ids and drops them from an `Authenticator`'s cache.

    Started in a service's lifespan (`start()`, `await stop()`); it reconnects
    by itself after a Redis outage and never fails the service. `subscribed`
    is set on each subscribe confirmation and cleared when the listener sees
    its connection fail (a reconnect redis-py's retry makes by itself may
    leave it set); `subscriptions` counts the confirmations, each of which
    dropped the whole cache.
    """

    task_name = "key-revocation-listener"

    def __init__(
        self, redis: Redis, auth: Authenticator, *, poll_s: float = 1.0, retry_s: float = 1.0
    ) -> None:
        super().__init__()
        self._redis = redis
        self._auth = auth
        self._poll_s = poll_s
        self._retry_s = retry_s
        self.subscribed = asyncio.Event()
        self.subscriptions = 0

    async def _loop(self) -> None:
        while not self.stopping:
            try:
                await self._listen()
            except (TimeoutError, RedisError, RedisClusterException, OSError) as exc:
                # RedisClusterException: a cluster's pub/sub with no node to reach
                log.warning("revocation listener lost Redis (%s); retrying", type(exc).__name__)
            self.subscribed.clear()
            await self.pause(self._retry_s)

    async def _listen(self) -> None:
        # Subscribe confirmations are wanted: after a Redis restart redis-py
        # reconnects and re-subscribes within `get_message`, and the
        # confirmation is the only sign that messages may have been missed.
        await ensure_topology(self._redis)  # a cluster's pub/sub needs its slot map first
        async with self._redis.pubsub(ignore_subscribe_messages=False) as pubsub:
            await pubsub.subscribe(keys.revoked_keys())
            while not self.stopping:
                message = await pubsub.get_message(timeout=self._poll_s)
                if message is not None:
                    self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self._auth.forget()  # what was revoked while we were not listening
            self.subscriptions += 1
            self.subscribed.set()
            if self.subscriptions > 1:
                log.info("revocation listener subscribed again; auth cache dropped")
        elif kind == "message":
            key_id = str(message["data"])
            dropped = self._auth.forget_key_id(key_id)
            log.info(
                "revoked key dropped from the auth cache",
                extra={"key_id": key_id, "entries": dropped},
            )
