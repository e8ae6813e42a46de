"""Key names are part of the wire contract (KEDA triggers and runbooks name them),
and their layout is what lets every script run on a Redis Cluster."""

from __future__ import annotations

import zlib

import pytest
from redis.crc import key_slot

from relay_core import keys, partitions

RUN_KEYS = (keys.events, keys.lease, keys.cancel, keys.enqueued, keys.run_cost)


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_queue_names_match_design() -> None:
    tag = partitions.tag(3)
    assert keys.queue("background", 3) == f"relay:{{{tag}}}:queue:background"
    assert keys.queue("interactive", 3) == f"relay:{{{tag}}}:queue:interactive"
    assert keys.QUEUE_DEAD == "relay:queue:dead" and keys.RUNNERS_GROUP == "runners"
    assert keys.queue_bell("background") == "relay:bell:background"


def test_unknown_pool_is_an_error() -> None:
    with pytest.raises(ValueError):
        keys.queue("batch", 0)
    with pytest.raises(ValueError):
        keys.queue_bell("batch")


def test_every_key_is_prefixed() -> None:
    built = [
        keys.events("r"), keys.lease("r"), keys.cancel("r"), keys.conv_messages("c"),
        keys.daily_cost("u", "2026-01-01"), keys.run_cost("r"), keys.breaker("p", "m"),
        keys.rate_limit("k"), keys.user_active_runs("u"), keys.enqueued("r"), keys.KILL_SWITCH,
        keys.pool_capacity("interactive"), keys.pool_admitted("interactive"), keys.LAYOUT,
    ]  # fmt: skip
    assert all(k.startswith(keys.PREFIX) for k in built)
    assert keys.conv_messages("c1") == "relay:conv:c1:messages"


def test_every_key_of_a_run_and_its_queue_entry_share_one_slot() -> None:
    for i in range(200):
        run_id = f"run_{i:04x}"
        slots = {slot(build(run_id)) for build in RUN_KEYS}
        slots |= {slot(keys.run_queue(pool, run_id)) for pool in keys.POOLS}
        assert slots == {partitions.slot_of_tag(partitions.tag(partitions.of(run_id)))}


def test_the_pool_admission_keys_share_a_slot() -> None:
    for pool in keys.POOLS:
        assert slot(keys.pool_capacity(pool)) == slot(keys.pool_admitted(pool))


def test_the_partition_of_a_run_is_crc32_of_its_id() -> None:
    """Stable across processes and languages (never Python's salted hash)."""
    assert partitions.of("run_abc") == zlib.crc32(b"run_abc") % partitions.count()
    assert partitions.of("run_abc") == 3263024134 % 24 == 22  # zlib.crc32(b"run_abc")


def test_runs_spread_over_every_partition() -> None:
    seen = {partitions.of(f"run_{i}") for i in range(2000)}
    assert seen == set(range(partitions.count()))


@pytest.mark.parametrize("count", [8, 12, 16, 24, 32, 48])
@pytest.mark.parametrize("primaries", [3, 4, 6])
def test_partition_tags_spread_evenly_over_equal_slot_ranges(count: int, primaries: int) -> None:
    """Three primaries of an evenly split cluster get 8/8/8 of the default 24
    (plain `{p0}`..`{p23}` would get 6/8/10)."""
    per_primary = [0] * primaries
    for tag in partitions.tags(count):
        per_primary[partitions.slot_of_tag(tag) * primaries // 16384] += 1
    assert max(per_primary) - min(per_primary) <= (0 if count % primaries == 0 else 1)


def test_the_partition_count_is_checked() -> None:
    with pytest.raises(ValueError):
        partitions.configure(0)
    with pytest.raises(ValueError):
        partitions.tags(5000)
