"""The keyspace on a real Redis Cluster: runs spread over every primary, and no
command Relay sends for a run spans two slots."""

from __future__ import annotations

import uuid

import pytest

from relay_core import keys, partitions, run_protocol
from relay_core.redis import create_redis
from relay_devstack.rediscluster import RedisClusterServer
from tests.cluster.clusterkit import run_keys_per_primary


@pytest.fixture
def cluster(redis_server: object) -> RedisClusterServer:
    assert isinstance(redis_server, RedisClusterServer), "run with make test-redis-cluster"
    return redis_server


async def test_keys_of_runs_land_on_every_primary_evenly(cluster: RedisClusterServer) -> None:
    rc = create_redis(cluster.url)
    try:
        before = run_keys_per_primary(cluster)
        run_ids = [f"run_{uuid.uuid4().hex}" for _ in range(300)]
        for run_id in run_ids:
            await run_protocol.enqueue(redis=rc, run_id=run_id, pool="background")
            await run_protocol.flag_cancel(redis=rc, run_id=run_id)
        after = run_keys_per_primary(cluster)
        added = {port: after[port] - before.get(port, 0) for port in after}
        assert len(added) == 3 and all(n > 0 for n in added.values()), added
        # 8 of the 24 partitions per primary: each gets about a third of the runs
        assert all(n > 0.2 * 2 * len(run_ids) for n in added.values()), added
        owners = {cluster.slot_owner(partitions.slot_of_tag(t)) for t in partitions.tags()}
        assert owners == set(after)
        per_owner = [
            sum(cluster.slot_owner(partitions.slot_of_tag(t)) == port for t in partitions.tags())
            for port in after
        ]
        assert per_owner == [8, 8, 8]
    finally:
        for run_id in run_ids:
            await rc.delete(keys.enqueued(run_id), keys.cancel(run_id))
        await rc.aclose()
