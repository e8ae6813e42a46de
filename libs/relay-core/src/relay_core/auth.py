"""API-key authentication for the public services (gateway, events).

Keys are verified by state, which stores only their hashes. A verified key is
cached here for `ttl_s` seconds (keyed by the key's hash, never the key), so a
revoked key stops working on every replica within that time without a state
round trip on every request. A key state does not know is cached for
`negative_ttl_s` (a few seconds: a client repeating one wrong key costs state
nothing; the keys state mints are random, so none can become valid in the
meantime except the bootstrap admin key while state stores it).

Both caches are bounded (`max_entries` each) and evict the least recently
used entry, never everything: a flood of distinct wrong keys fills the
negative cache, not the one holding valid keys. An entry of a valid key that
has expired is kept (until evicted) as a hint: that key was good, so it is
verified again even from an address the failed-authentication throttle holds
back (`relay_core.auththrottle`), while a key never seen is refused there.

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
from collections import OrderedDict
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from relay_core import keys
from relay_core.auththrottle import AuthThrottle
from relay_core.background import BackgroundLoop
from relay_core.errors import ApiError
from relay_core.redis import ensure_topology
from relay_core.state_api import Principal
from relay_core.state_client import NotFound, StateClient, StateUnavailable

log = logging.getLogger(__name__)

BEARER = "bearer "
V = TypeVar("V")


class LruCache(Generic[V]):
    """Digest -> (expiry, value), least recently used out first.

    An OrderedDict rather than a library: the auth cache needs the expired
    entries of valid keys kept as hints (see the module's docstring), which
    the TTL caches of cachetools drop by design, and this is a dozen lines."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, digest: str) -> tuple[float, V] | None:
        item = self._items.get(digest)
        if item is not None:
            self._items.move_to_end(digest)
        return item

    def put(self, digest: str, expires: float, value: V) -> None:
        self._items[digest] = (expires, value)
        self._items.move_to_end(digest)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def pop(self, digest: str) -> None:
        self._items.pop(digest, None)

    def clear(self) -> None:
        self._items.clear()

    def digests_where(self, match: Any) -> list[str]:
        return [d for d, (_, value) in self._items.items() if match(value)]


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


def _invalid() -> ApiError:
    return ApiError(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})


class Authenticator:
    def __init__(
        self,
        state: StateClient,
        *,
        ttl_s: float = 5.0,
        negative_ttl_s: float = 5.0,
        max_entries: int = 10_000,
        throttle: AuthThrottle | None = None,
    ) -> None:
        self._state = state
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._valid: LruCache[Principal] = LruCache(max_entries)
        self._unknown: LruCache[None] = LruCache(max_entries)
        self._throttle = throttle
        self._inflight: dict[str, asyncio.Task[Principal | None]] = {}
        self._generation = 0  # bumped by every forget: older verifications are not cached

    async def authenticate(self, authorization: str | None, client: str | None = None) -> Principal:
        """The key's principal; 401 for a missing, malformed, unknown or revoked
        key, 429 when `client` (its address) has failed too often lately."""
        key = bearer_token(authorization)
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        hit = self._valid.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        if hit is None and self._throttle is not None:
            await self._throttle.check(client)  # a key never seen: not from a flooder
        miss = self._unknown.get(digest)
        if hit is None and miss is not None and miss[0] > now:
            await self._failed(client)
            raise _invalid()
        principal = await asyncio.shield(self._verification(key, digest))
        if principal is None:
            await self._failed(client)
            raise _invalid()
        return principal

    async def _failed(self, client: str | None) -> None:
        if self._throttle is not None:
            await self._throttle.failed(client)

    def forget(self) -> None:
        self._valid.clear()
        self._unknown.clear()
        self._detach_inflight()

    def forget_key_id(self, key_id: str) -> int:
        """Drop the cached verification of one key (revoked or changed); returns
        how many went."""
        stale = self._valid.digests_where(lambda p: p.key_id == key_id)
        for digest in stale:
            self._valid.pop(digest)
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
            if principal is not None:
                self._valid.put(digest, started + self._ttl_s, principal)
                self._unknown.pop(digest)
            else:
                self._unknown.put(digest, started + self._negative_ttl_s, None)
                self._valid.pop(digest)  # revoked: no longer a hint of a good key
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
