"""The one way services open Redis: redis-py's asyncio client with timeouts.

Timeouts are short so a dead Redis turns into a fast 503 (or a runner backing
off), never a hung request. A client that issues blocking reads (XREAD BLOCK,
XREADGROUP BLOCK) is a separate client whose `timeout_s` exceeds its block
time, so the blocking call is not cut short by the socket timeout.

The pool is a `BlockingConnectionPool`: under a burst (200 chats at once), a
request waits up to `timeout_s` for a free connection instead of failing at
once with "Too many connections" (which the services would report as Redis
being down).

The retry is redis-py's ASYNCIO `Retry` (`redis.asyncio.retry`): the sync one
returns the coroutine unawaited, so nothing was retried and every pooled
connection failed once after a Redis restart (tests/test_redis_reconnect.py).
With it a command whose connection died is retried once after reconnecting,
and a pubsub connection reconnects and re-subscribes by itself: a subscriber
that must know it may have missed messages watches for subscribe
confirmations (see `relay_core.auth.RevocationListener`), not for errors.

Only connection errors are retried, not timeouts: retrying a timed-out
command would double the time a hung Redis takes to turn into a 503 (and
resend a command the hung server may still execute).

`stream_entries` types a stream reply as these clients return it: redis-py
annotates each reply for every kind of client (bytes or str, None where a
field may be missing), which a `decode_responses` client never returns.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def create_redis(url: str, *, timeout_s: float = 2.0, max_connections: int = 64) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=15,
        max_connections=max_connections,
        timeout=timeout_s,
        retry=Retry(
            ExponentialBackoff(cap=0.5, base=0.05),
            retries=1,
            supported_errors=(RedisConnectionError,),
        ),
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


async def ping(redis: Redis) -> bool:
    try:
        return bool(await redis.ping())
    except Exception:
        return False


StreamEntry = tuple[str, dict[str, str]]


def stream_entries(reply: object) -> list[StreamEntry]:
    """An XRANGE/XREVRANGE reply of a client from `create_redis` (or any client
    with `decode_responses=True`): entry ids and fields are str. Typing only."""
    return cast(list[StreamEntry], reply)
