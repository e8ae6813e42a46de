"""A per-key cap on concurrent event streams, across every events replica.

A key limited to 30 requests a minute opened 300 streams in half a second,
and another opened 1,000 streams of one run. Opening a stream now counts
against the key's rate limit (relay_core.ratelimit, the gateway's limiter),
and the streams a key holds open at once are capped: `max_streams` on the
key, else `RELAY_MAX_STREAMS_PER_KEY` (1,000 by default: far more than a
person has tabs, enough for a server-side application streaming many chats
under one key; one that needs more gets a key with a higher `max_streams`).

How: each open stream is a member of a sorted set per key
(`relay_core.keys.key_streams`), scored by when its lease lapses. Taking a
place is one Lua script (drop lapsed members, compare the count with the
cap, add), so two replicas never both take the last place. The process
renews the leases of its open streams every `lease_s / 3` (one ZADD XX per
key) and removes a stream's member when the stream ends; a crashed process's
members lapse after `lease_s`.

Why it fails open, within this process: when Redis cannot answer (down, or
its small pool exhausted by a burst) the stream is opened anyway (with a
warning in the log) unless the key already holds `cap` streams on this very
process, as the rate limit does with its local view.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay_core import keys
from relay_core.background import BackgroundLoop

log = logging.getLogger(__name__)

# KEYS: the key's streams. ARGV: now ms, lease expiry ms, stream id, cap, lease ms.
# Returns 1 (taken) or 0 (the key is at its cap).
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def _now_ms() -> int:
    return int(time.time() * 1000)


class StreamCap(BackgroundLoop):
    task_name = "stream-cap-renewal"

    def __init__(self, redis: Redis, *, lease_s: float = 60.0) -> None:
        super().__init__()
        self._redis = redis
        self._lease_ms = int(lease_s * 1000)
        self._script = redis.register_script(_TAKE)
        self._open: dict[str, set[str]] = {}  # key id -> its streams open here
        self._releases: set[asyncio.Task[None]] = set()

    def open_streams(self, key_id: str) -> int:
        """Streams of `key_id` open on this process."""
        return len(self._open.get(key_id, ()))

    async def take(self, *, key_id: str, cap: int) -> str | None:
        """A place for one more stream of `key_id` (its id, for `release`), or None
        when the key holds `cap` streams already."""
        stream_id = uuid.uuid4().hex
        now = _now_ms()
        args: list[str | int] = [now, now + self._lease_ms, stream_id, cap, self._lease_ms]
        try:
            taken = await self._script(keys=[keys.key_streams(key_id)], args=args)
        except REDIS_ERRORS as exc:
            log.warning("stream cap not shared: redis unavailable (%s)", type(exc).__name__)
            taken = 1 if self.open_streams(key_id) < cap else 0
        if not int(taken):
            return None
        self._open.setdefault(key_id, set()).add(stream_id)
        return stream_id

    def release(self, *, key_id: str, stream_id: str) -> None:
        """The stream ended: its place goes back (in the background)."""
        streams = self._open.get(key_id)
        if streams is None or stream_id not in streams:
            return
        streams.discard(stream_id)
        if not streams:
            del self._open[key_id]
        task = asyncio.get_running_loop().create_task(self._remove(key_id, stream_id))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _remove(self, key_id: str, stream_id: str) -> None:
        try:
            await self._redis.zrem(keys.key_streams(key_id), stream_id)
        except REDIS_ERRORS as exc:  # the lease lapses instead
            log.warning("could not release a stream's place (%s)", type(exc).__name__)

    async def renew(self) -> None:
        """Push back the lease of every stream open here (one ZADD per key)."""
        if not self._open:
            return
        expires = _now_ms() + self._lease_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id, streams in list(self._open.items()):
                name = keys.key_streams(key_id)
                pipe.zadd(name, dict.fromkeys(streams, expires))
                pipe.pexpire(name, self._lease_ms)
            await pipe.execute()

    async def _loop(self) -> None:
        while not self.stopping:
            await self.pause(self._lease_ms / 3000)
            try:
                await self.renew()
            except REDIS_ERRORS as exc:
                log.warning("stream leases not renewed (%s); retrying", type(exc).__name__)
