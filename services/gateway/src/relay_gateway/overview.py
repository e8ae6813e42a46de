"""`GET /v1/admin/overview`: what `relay top` and the web console show an operator.

Runs in flight, live capacity and queue lag per runner pool, the circuit
breaker of every model in the catalog, the kill switch, and what every user
spent today (UTC). The Redis parts read keys that the runners and state write
(the gateway imports neither): the queue depth with `relay_core.queue_depth`,
the capacity with `relay_core.capacity`, the breaker hashes through
`relay_core.keys` (a breaker with no hash is closed: the hash is deleted when
it closes and expires when idle). The spend comes from state's cost ledger.

Why the spend may be null while the rest answers: an operator watching an
incident needs the live figures most when a dependency is in trouble, so a
state that does not answer blanks only its own figure. Redis down is a 503:
then there is nothing current to show.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from redis.asyncio import Redis

from relay_core import keys
from relay_core.capacity import PoolCapacity
from relay_core.queue_depth import queue_depth
from relay_core.state_client import StateError
from relay_gateway import killswitch
from relay_gateway.killswitch import REDIS_ERRORS, redis_unavailable
from relay_gateway.runtime import Runtime
from relay_gateway.schemas import BreakerView, OverviewOut, PoolOverview, SpendToday

log = logging.getLogger(__name__)


async def _spend_today(runtime: Runtime) -> SpendToday | None:
    day = datetime.now(UTC).date().isoformat()
    try:
        total = await runtime.state.daily_spend_total(day=day)
    except StateError as exc:
        log.warning("overview without today's spend: %s", exc)
        return None
    return SpendToday(
        day=day, cost_usd=total.cost_usd, runs=total.runs, runs_in_flight=total.runs_in_flight
    )


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
        state = value.decode() if isinstance(value, bytes) else str(value or "closed")
        out[target] = state if state in ("open", "half_open") else "closed"
    return out


async def _pool(redis: Redis, pool: str) -> PoolOverview:
    depth = await queue_depth(redis, pool)
    _, capacity = await PoolCapacity(redis, pool).usage()
    return PoolOverview.model_validate(
        {"pool": pool, "in_flight": depth.in_flight, "capacity": capacity, "queue_lag": depth.lag}
    )


async def _breakers(runtime: Runtime) -> list[BreakerView]:
    specs = [runtime.catalog.get(name) for name in runtime.catalog.names()]
    states = await breaker_states(runtime.redis, [(s.provider, s.upstream_model) for s in specs])
    return [
        BreakerView.model_validate(
            {
                "model": s.name,
                "provider": s.provider,
                "upstream_model": s.upstream_model,
                "state": states[(s.provider, s.upstream_model)],
            }
        )
        for s in specs
    ]


async def _redis_part(runtime: Runtime) -> tuple[bool, list[PoolOverview], list[BreakerView]]:
    try:
        enabled = await killswitch.read(runtime.redis)
        pools = [await _pool(runtime.redis, pool) for pool in keys.POOLS]
        breakers = await _breakers(runtime)
    except REDIS_ERRORS as exc:
        raise redis_unavailable("cannot read the overview") from exc
    return enabled, pools, breakers


async def overview(*, runtime: Runtime) -> OverviewOut:
    (enabled, pools, breakers), spend = await asyncio.gather(
        _redis_part(runtime), _spend_today(runtime)
    )
    return OverviewOut(kill_switch=enabled, pools=pools, breakers=breakers, spend_today=spend)
