"""Regression: the first lease of a claim lasted state's TTL, not the runner's.

A runner renews its lease every third of ITS `RELAY_LEASE_TTL_S`, but state
set the first lease with its own default (30 s). A runner with a 3 s lease
that died before its first heartbeat left its run unclaimable for 30 s
instead of 3 s. The claim now carries the runner's TTL.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from relay_core import keys as redis_keys
from relay_core.state_api import CreateRunIn
from relay_core.state_client import StateClient


async def test_the_first_lease_lasts_the_runners_ttl(
    client: StateClient, redis: Redis, new_run: Callable[..., CreateRunIn]
) -> None:
    run, _ = await client.create_run(new_run())
    await client.claim_run(run.run_id, consumer="runner-a", lease_ttl_s=3)
    assert 2_000 < await redis.pttl(redis_keys.lease(run.run_id)) <= 3_000


async def test_without_a_ttl_the_claim_uses_states_default(
    client: StateClient, redis: Redis, new_run: Callable[..., CreateRunIn]
) -> None:
    run, _ = await client.create_run(new_run())
    await client.claim_run(run.run_id, consumer="runner-a")
    assert 20_000 < await redis.pttl(redis_keys.lease(run.run_id)) <= 30_000
