"""The failed-authentication throttle: wrong keys are not free.

12,000 distinct wrong keys each cost a call to state and a Postgres query,
with nothing in the way: a valid tenant's median latency went from 26 to 612
ms. Now every failed verification (an unknown or revoked key) is counted
against the client's address, with the same GCRA as the per-key rate limit
(`relay_core.ratelimit`, one Redis key per address,
`relay_core.keys.auth_failures`): a burst of `failures_per_min`, then one
every 60/N s. Past it, a key this replica has never seen answered is refused
with 429 (reason `auth_failures`, `Retry-After`) before anything asks state.

What keeps working from a throttled address: a key whose verification is
cached, and a key this replica verified before (its entry in the auth cache
has expired but the cache still remembers it was good, relay_core.auth), so
a valid tenant behind the same NAT or proxy as an attacker is not locked
out; a key never seen before waits for the throttle like a wrong one.

The address is the client's as the HTTP server saw it: the socket's peer,
or what `X-Forwarded-For` says when the peer is a trusted proxy
(`RELAY_TRUSTED_PROXIES`, relay_core.httpserver). IPv6 addresses count per
/64, the block one subscriber usually holds.

Why it fails open, within this process: when Redis cannot answer, a
verification goes ahead (with a warning in the log) unless this process's
own count of the address's failures (a `LocalLimiter`, a lower bound of the
shared one) is past the limit, as the rate limit does.
"""

from __future__ import annotations

import ipaddress
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core import keys
from relay_core.errors import ApiError
from relay_core.ratelimit import LocalLimiter, retry_after_s, take

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def client_bucket(address: str | None) -> str:
    """The throttle's unit for a client address: the address, an IPv6 one's /64."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class AuthThrottle:
    def __init__(self, redis: Redis, *, failures_per_min: int) -> None:
        self._redis = redis
        self.failures_per_min = failures_per_min
        self._local = LocalLimiter()

    async def check(self, client: str | None) -> None:
        """Raise 429 when `client` has used up its failed authentications."""
        bucket = client_bucket(client)
        limit = self.failures_per_min
        wait_us = self._local.take(bucket, limit_per_min=limit, count=False)
        if not wait_us:
            try:
                wait_us = await take(
                    self._redis, keys.auth_failures(bucket), limit_per_min=limit, count=False
                )
            except REDIS_ERRORS as exc:
                log.warning("auth throttle not shared: redis unavailable (%s)", type(exc).__name__)
        if wait_us > 0:
            retry_after = retry_after_s(wait_us)
            raise ApiError(
                429,
                f"too many failed authentications from your address; retry in {retry_after} s",
                reason="auth_failures",
                headers={"Retry-After": str(retry_after)},
            )

    async def failed(self, client: str | None) -> None:
        """Count one failed authentication of `client`."""
        bucket = client_bucket(client)
        self._local.take(bucket, limit_per_min=self.failures_per_min)
        try:
            await take(self._redis, keys.auth_failures(bucket), limit_per_min=self.failures_per_min)
        except REDIS_ERRORS as exc:
            log.warning("auth failure not shared: redis unavailable (%s)", type(exc).__name__)
