"""Runs are spread over a fixed number of partitions, each a Redis Cluster hash tag.

`relay_core.keys` puts every key of one run (its events, lease, cancel flag,
`enqueued` marker, cost counter) and its queue entry under its partition's
tag, so a script or MULTI over one run always stays in one slot, the runner
reads its pool's queue as one stream per partition, and the fan-out reads
each partition's runs in one `XREAD`. docs/design.md ("Redis keys") has the
layout and what a resize means.

Decisions:

- **Partition of a run: CRC-32 of its id modulo the count.** Stable across
  processes, restarts and languages (zlib's CRC-32, the common
  ISO-HDLC one); never Python's `hash()`, which is salted per process.
- **The count is one setting for the whole deployment** (`RELAY_REDIS_PARTITIONS`,
  default 24), set once at start-up by `relay_core.entrypoint` (`configure`).
  Every process must agree: the runner records it in Redis
  (`keys.LAYOUT`) and refuses to read queues laid out for another count.
  24 divides evenly by 1, 2, 3, 4, 6, 8, 12 and 24 shards, is enough to
  spread a pool's queue and its event traffic over up to 24 primaries, and
  keeps what is done once per partition small (a runner's idle sweep, the
  fan-out's readers, the KEDA triggers: two per partition and pool).
- **Tags are chosen so their slots are evenly spaced.** A tag's slot is
  CRC16(tag) mod 16384, effectively random: the plain tags `p0`..`p23` put
  6, 8 and 10 partitions on the three primaries of an evenly split cluster.
  So the tag of partition `i` of `n` is the first of `p<i>.0`, `p<i>.1`, ...
  whose slot lies in the middle half of the `i`-th of `n` equal slot ranges:
  any cluster whose primaries own equal contiguous ranges (what
  `redis-cli --cluster create`, the managed services and the test harness
  do) gets `n / primaries` partitions on each primary when that divides
  (8/8/8 on three, 6 each on four), and within one otherwise. The search is
  deterministic, so every process (and the chart, `deploy/helm/relay/files/`)
  derives the same tags; `tests/deploy` checks the chart's copy.
"""

from __future__ import annotations

import functools
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = [
    "DEFAULT_PARTITIONS",
    "MAX_PARTITIONS",
    "configure",
    "count",
    "of",
    "slot_of_tag",
    "tag",
    "tags",
]

DEFAULT_PARTITIONS = 24
MAX_PARTITIONS = 1024

_count = DEFAULT_PARTITIONS


def configure(partitions: int) -> None:
    """Set the deployment's partition count (once, at start-up, from the settings)."""
    global _count
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"the partition count must be 1..{MAX_PARTITIONS}, not {partitions}")
    _count = partitions


def count() -> int:
    """How many partitions runs are spread over."""
    return _count


def of(run_id: str) -> int:
    """The partition of a run: CRC-32 of its id, modulo the count."""
    return zlib.crc32(run_id.encode()) % _count


def tag(partition: int) -> str:
    """The hash tag (without braces) of a partition of the current count."""
    return tags()[partition]


def tags(partitions: int | None = None) -> tuple[str, ...]:
    """Every partition's hash tag, for `partitions` (default: the current count)."""
    return _tags(_count if partitions is None else partitions)


def slot_of_tag(value: str) -> int:
    return int(key_slot(value.encode()))


@functools.lru_cache(maxsize=8)
def _tags(n: int) -> tuple[str, ...]:
    if not 1 <= n <= MAX_PARTITIONS:
        raise ValueError(f"the partition count must be 1..{MAX_PARTITIONS}, not {n}")
    width = REDIS_CLUSTER_HASH_SLOTS / n
    found = []
    for i in range(n):
        low, high = (i + 0.25) * width, (i + 0.75) * width
        j = 0
        while not low <= slot_of_tag(f"p{i}.{j}") < high:
            j += 1
        found.append(f"p{i}.{j}")
    return tuple(found)
