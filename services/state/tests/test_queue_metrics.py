"""Queue lag and pending gauges read the real consumer group (Redis 6.2 and 7)."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from relay_core import keys
from relay_core.redis import create_redis
from relay_state import queue_metrics


def gauge(name: str, pool: str) -> float:
    value = REGISTRY.get_sample_value(name, {"pool": pool})
    assert value is not None
    return value


@pytest.fixture
async def redis(redis_db_url):
    # A database of its own: the gauges read the well-known queue names.
    client = create_redis(redis_db_url(7))
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


async def test_lag_and_pending_follow_the_group(redis) -> None:
    stream = keys.queue("background", 0)  # the gauges sum every partition
    await redis.xgroup_create(stream, keys.RUNNERS_GROUP, id="0", mkstream=True)
    for _ in range(5):
        await redis.xadd(stream, {"run_id": uuid.uuid4().hex})
    await queue_metrics.sample(redis)
    assert gauge("relay_queue_lag", "background") == 5
    assert gauge("relay_queue_pending", "background") == 0

    await redis.xreadgroup(keys.RUNNERS_GROUP, "runner-1", {stream: ">"}, count=2)
    await queue_metrics.sample(redis)
    assert gauge("relay_queue_lag", "background") == 3
    assert gauge("relay_queue_pending", "background") == 2


async def test_no_stream_reads_as_empty(redis) -> None:
    await queue_metrics.sample(redis)
    assert gauge("relay_queue_lag", "interactive") == 0
    assert gauge("relay_queue_pending", "interactive") == 0
    assert REGISTRY.get_sample_value("relay_queue_dead_letters") == 0
