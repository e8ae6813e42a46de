"""API-key authentication for the public services (gateway, events).

Keys are verified by state, which stores only their hashes. A verified key is
cached here for `ttl_s` seconds (keyed by the key's hash, never the key), so a
revoked key stops working on every replica within that time without a state
round trip on every request. A failed verification is not cached beyond
`negative_ttl_s`, so a key created a moment ago works at once.

Revocation is faster than the TTL where a `RevocationListener` runs: state
publishes each revoked key id on `relay_core.keys.revoked_keys()`, and the
listener drops that key from the cache at once. Pub/sub delivers at most
once, so whenever the listener (re)subscribes it drops the whole cache (a
revocation may have gone by while it was not listening); the TTL stays the
bound when Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core import keys
from relay_core.errors import ApiError
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

    async def authenticate(self, authorization: str | None) -> Principal:
        key = bearer_token(authorization)
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            principal = await self._verify(key)
            ttl = self._ttl_s if principal is not None else self._negative_ttl_s
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + ttl, principal)
        if principal is None:
            raise ApiError(
                401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        return principal

    def forget(self) -> None:
        self._cache.clear()

    def forget_key_id(self, key_id: str) -> int:
        """Drop the cached verification of one key (revoked); returns how many went."""
        stale = [
            digest
            for digest, (_, principal) in self._cache.items()
            if principal is not None and principal.key_id == key_id
        ]
        for digest in stale:
            self._cache.pop(digest, None)
        return len(stale)

    async def _verify(self, key: str) -> Principal | None:
        try:
            return await self._state.verify_key(key)
        except NotFound:
            return None
        except StateUnavailable as exc:
            raise ApiError(
                503, "cannot verify API key: state service unavailable", reason="state_unavailable"
            ) from exc


class RevocationListener:
    """Subscribes to revoked key ids and drops them from an `Authenticator`'s cache.

    Started in a service's lifespan (`start()`, `await stop()`); it reconnects
    by itself after a Redis outage and never fails the service.
    """

    def __init__(
        self, redis: Redis, auth: Authenticator, *, poll_s: float = 1.0, retry_s: float = 1.0
    ) -> None:
        self._redis = redis
        self._auth = auth
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="key-revocation-listener")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._listen()
            except (TimeoutError, RedisError, OSError) as exc:
                log.warning("revocation listener lost Redis (%s); retrying", type(exc).__name__)
            self.subscribed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._retry_s)

    async def _listen(self) -> None:
        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(keys.revoked_keys())
            self._auth.forget()  # what was revoked while we were not listening
            self.subscribed.set()
            while not self._stopping.is_set():
                message = await pubsub.get_message(timeout=self._poll_s)
                if message is not None and message.get("type") == "message":
                    key_id = str(message["data"])
                    dropped = self._auth.forget_key_id(key_id)
                    log.info(
                        "revoked key dropped from the auth cache",
                        extra={"key_id": key_id, "entries": dropped},
                    )
