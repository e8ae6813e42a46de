"""Regression: the lease heartbeat stopped renewing EVERY lease while one shard
failed over (redis-py's sync cluster pipeline fails as a whole and never
refreshed its slot map), so a runner lost all its runs, on every shard, once
the lease TTL ran out (the failover test saw every run take a second attempt
on a loaded machine). Now the leases of the shards that answer are renewed,
and the failing shard's again once its replica has taken over."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from relay_core import keys, partitions
from relay_devstack.rediscluster import RedisClusterServer
from relay_runner.lease import LeaseKeeper

TTL_S = 6.0


def test_the_heartbeat_renews_through_a_failover(tmp_path: Path) -> None:
    cluster = RedisClusterServer(tmp_path / "cluster").start()
    keeper = LeaseKeeper(cluster.url, ttl_s=TTL_S, pool="background", consumer="c", mode="cluster")
    try:
        keeper.start()
        runs = [f"run_{i:03d}" for i in range(48)]
        owner = {
            r: cluster.slot_owner(partitions.slot_of_tag(partitions.tag(partitions.of(r))))
            for r in runs
        }
        with redis.RedisCluster.from_url(cluster.url, decode_responses=True) as client:
            for run_id in runs:
                client.set(keys.lease(run_id), "c:1", px=int(TTL_S * 1000))
                keeper.hold(run_id, "c:1", "0-1")
        victim = owner[runs[0]]
        cluster.kill_node(victim)
        time.sleep(1.0)  # the leases age

        keeper.beat()  # while the shard has no primary
        assert not any(keeper.lost(r) for r in runs)
        for run_id in (r for r in runs if owner[r] != victim):
            with redis.Redis(port=owner[run_id]) as node:
                assert int(node.pttl(keys.lease(run_id))) > (TTL_S - 0.5) * 1000, run_id

        cluster.wait_failover(victim)
        keeper.beat()
        assert not any(keeper.lost(r) for r in runs)
        with redis.RedisCluster.from_url(cluster.url, decode_responses=True) as client:
            ttls = {r: int(client.pttl(keys.lease(r))) for r in runs}
        assert all(ttl > (TTL_S - 0.5) * 1000 for ttl in ttls.values()), ttls
    finally:
        keeper.stop()
        cluster.stop()
