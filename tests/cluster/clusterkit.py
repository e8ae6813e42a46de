"""What the cluster tests read from the nodes themselves (plain clients, one per node)."""

from __future__ import annotations

from collections import Counter

import redis

from relay_devstack.rediscluster import RedisClusterServer

RUN_KEYS = "relay:{p*"  # every key of a run carries its partition's tag


def run_keys_per_primary(cluster: RedisClusterServer) -> dict[int, int]:
    """Primary port -> how many keys of runs (and partition queues) it holds."""
    found: Counter[int] = Counter()
    for port in cluster.primary_ports():
        with redis.Redis(port=port, password=cluster.password, decode_responses=True) as node:
            found[port] = sum(1 for _ in node.scan_iter(match=RUN_KEYS, count=1000))
    return dict(found)
