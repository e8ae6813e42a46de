"""How a service finds out it talks to a Redis Cluster (`relay_core.redis`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay_core.redis import WrongRedisMode, create_redis, is_cluster, resolve_mode
from relay_devstack.procs import free_cluster_port
from relay_devstack.rediscluster import RedisClusterServer


def test_auto_detects_a_cluster_and_a_forced_mode_is_obeyed(redis_server: object) -> None:
    assert isinstance(redis_server, RedisClusterServer), "run with make test-redis-cluster"
    assert resolve_mode(redis_server.url, "auto") is True
    assert is_cluster(create_redis(redis_server.url))
    assert not is_cluster(create_redis(redis_server.url, mode="standalone"))
    with pytest.raises(ValueError, match="RELAY_REDIS_MODE"):
        resolve_mode(redis_server.url, "sharded")


async def test_a_cluster_found_after_an_unreachable_start_is_refused_not_misused(
    tmp_path: Path,
) -> None:
    """`auto` cannot ask a server that is down: the client is a plain one whose every
    new connection asks again, and fails (503 for the service) on a cluster rather
    than send it commands it would redirect."""
    ports = [free_cluster_port() for _ in range(6)]
    url = f"redis://127.0.0.1:{ports[0]}/0"
    client = create_redis(url, timeout_s=0.5)
    assert not is_cluster(client)
    cluster = RedisClusterServer(tmp_path / "late", ports=ports).start()
    try:
        with pytest.raises(WrongRedisMode, match="RELAY_REDIS_MODE"):
            await client.get("relay:kill-switch")
    finally:
        await client.aclose()
        cluster.stop()
