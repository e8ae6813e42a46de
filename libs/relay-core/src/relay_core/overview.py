"""Read-only views of the run machinery in Redis, for operators' screens.

The admin overview (`relay top`, the web console) shows, per runner pool,
the runs in flight, the live capacity and the queue lag, and the circuit
breaker of every model. Everything here reads keys that others write (the
queue streams and their `runners` group, the capacity hash runners
advertise, the breaker hashes) through `relay_core.keys`, and never writes,
so the gateway can show them without importing the runner or state.

- In flight is the group's pending count: entries delivered to a runner and
  not acknowledged, which is every run being executed (a runner acks when
  the run ends) plus any whose runner died and whose lease has not lapsed.
- Lag is Redis 7's `lag` field of XINFO GROUPS; Redis 6.2 (the embedded dev
  server) has none, and Redis 7 reports none after some deletions, so it is
  then counted with an XRANGE after the group's last-delivered id, capped at
  `LAG_COUNT_CAP` ("at least 10,000" is as actionable as the exact number).
- A breaker with no hash is closed (the hash is deleted when it closes and
  expires when idle).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from relay_core import keys
from relay_core.capacity import PoolCapacity

__all__ = ["LAG_COUNT_CAP", "PoolView", "breaker_states", "pool_view"]

LAG_COUNT_CAP = 10_000


@dataclass(frozen=True)
class PoolView:
    pool: str
    in_flight: int
    capacity: int
    queue_lag: int


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _group(redis: Redis, stream: str) -> dict[str, object] | None:
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream: nothing was ever queued
        return None
    for group in groups:
        if _text(group.get("name")) == keys.RUNNERS_GROUP:
            return {_text(k): v for k, v in group.items()}
    return None


async def _lag(redis: Redis, stream: str, group: dict[str, object]) -> int:
    lag = group.get("lag")
    if lag is not None:
        return int(_text(lag))
    last = _text(group.get("last-delivered-id") or "0-0")
    entries = await redis.xrange(stream, min="(" + last, max="+", count=LAG_COUNT_CAP)
    return len(entries or [])


async def pool_view(redis: Redis, pool: str) -> PoolView:
    """In flight, live capacity and queue lag of one runner pool."""
    stream = keys.queue(pool)
    _, capacity = await PoolCapacity(redis, pool).usage()
    group = await _group(redis, stream)
    if group is None:  # no runner has joined yet: everything queued is lag
        return PoolView(pool, 0, capacity, int(await redis.xlen(stream)))
    pending = int(_text(group.get("pending") or 0))
    return PoolView(pool, pending, capacity, await _lag(redis, stream, group))


async def breaker_states(
    redis: Redis, targets: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """`closed`, `half_open` or `open` for each (provider, upstream model), in one round trip."""
    wanted = list(dict.fromkeys(targets))
    async with redis.pipeline(transaction=False) as pipe:
        for provider, model in wanted:
            pipe.hget(keys.breaker(provider, model), "state")
        values = await pipe.execute()
    out: dict[tuple[str, str], str] = {}
    for target, value in zip(wanted, values, strict=True):
        state = _text(value) if value is not None else "closed"
        out[target] = state if state in ("open", "half_open") else "closed"
    return out
