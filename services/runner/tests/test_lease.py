"""The heartbeat thread renews leases, refreshes entries, and notices a lost lease."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import cast

import pytest
import redis

from relay_core import keys
from relay_core.redis import create_sync_redis
from relay_runner.lease import LeaseKeeper

POOL = "interactive"


@pytest.fixture
def r(runner_redis: object) -> Iterator[redis.Redis]:
    # On a cluster a RedisCluster: the same commands, typed as the plain client.
    client = cast(redis.Redis, create_sync_redis(runner_redis.url))  # type: ignore[attr-defined]
    yield client
    client.close()


@pytest.fixture
def keeper(runner_redis: object) -> Iterator[LeaseKeeper]:
    k = LeaseKeeper(runner_redis.url, ttl_s=3.0, pool=POOL, consumer="keeper-c")  # type: ignore[attr-defined]
    k.start()
    yield k
    k.stop()


def _entry(r: redis.Redis | redis.RedisCluster, run_id: str) -> str:
    try:
        r.xgroup_create(keys.run_queue(POOL, run_id), keys.RUNNERS_GROUP, id="0", mkstream=True)
    except redis.ResponseError:
        pass
    eid = str(r.xadd(keys.run_queue(POOL, run_id), {"run_id": run_id}))
    r.xclaim(
        keys.run_queue(POOL, run_id),
        keys.RUNNERS_GROUP,
        "keeper-c",
        0,
        [eid],
        idle=50_000,
        retrycount=1,
        force=True,
    )
    return eid


def test_beat_renews_and_refreshes_idle_time(r: redis.Redis, keeper: LeaseKeeper) -> None:
    run_id = f"run_{uuid.uuid4().hex}"
    eid = _entry(r, run_id)
    r.set(keys.lease(run_id), "keeper-c:1", px=500)
    keeper.hold(run_id, "keeper-c:1", eid)
    keeper.beat()
    assert 2000 < int(r.pttl(keys.lease(run_id))) <= 3000
    pending = r.xpending_range(keys.run_queue(POOL, run_id), keys.RUNNERS_GROUP, eid, eid, 1)
    assert int(pending[0]["time_since_delivered"]) < 5_000  # idle reset: not an orphan
    assert pending[0]["times_delivered"] == 1  # JUSTID does not count as a delivery
    assert not keeper.lost(run_id)
    r.xack(keys.run_queue(POOL, run_id), keys.RUNNERS_GROUP, eid)


def test_a_taken_or_vanished_lease_is_lost(r: redis.Redis, keeper: LeaseKeeper) -> None:
    taken, vanished = f"run_{uuid.uuid4().hex}", f"run_{uuid.uuid4().hex}"
    for run_id in (taken, vanished):
        keeper.hold(run_id, "keeper-c:1", _entry(r, run_id))
    r.set(keys.lease(taken), "other:2", px=5000)
    keeper.beat()
    assert keeper.lost(taken) and keeper.lost(vanished)
    assert r.get(keys.lease(taken)) == "other:2"  # never overwritten
    assert r.get(keys.lease(vanished)) is None  # never resurrected
    keeper.drop(taken)
    assert not keeper.lost(taken)


def test_the_thread_beats_on_its_own(r: redis.Redis, keeper: LeaseKeeper) -> None:
    run_id = f"run_{uuid.uuid4().hex}"
    r.set(keys.lease(run_id), "keeper-c:1", px=1500)
    keeper.hold(run_id, "keeper-c:1", _entry(r, run_id))
    deadline = time.monotonic() + 5
    first = int(r.pttl(keys.lease(run_id)))
    while time.monotonic() < deadline:  # the lease outlives its TTL only if renewed
        if int(r.pttl(keys.lease(run_id))) > max(first, 2000):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the heartbeat thread did not renew the lease")
