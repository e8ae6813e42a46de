"""API-key authentication for the public services (gateway, events).

Keys are verified by state, which stores only their hashes. A verified key is
cached here for `ttl_s` seconds (keyed by the key's hash, never the key), so a
revoked key stops working on every replica within that time without a state
round trip on every request. A failed verification is not cached beyond
`negative_ttl_s`, so a key created a moment ago works at once.
"""

from __future__ import annotations

import hashlib
import time

from relay_core.errors import ApiError
from relay_core.state_api import Principal
from relay_core.state_client import NotFound, StateClient, StateUnavailable

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

    async def _verify(self, key: str) -> Principal | None:
        try:
            return await self._state.verify_key(key)
        except NotFound:
            return None
        except StateUnavailable as exc:
            raise ApiError(503, "cannot verify API key: state service unavailable") from exc
