"""Every Redis key, stream and group name Relay uses, in one place.

No other module spells a `relay:` literal. Keys that belong to one run or one
user take it as an argument so a grep for the function finds every user.

Layout for Redis Cluster (why: docs/design.md, "Redis keys"): every key of
one run, and its queue entry, carry the run's partition tag
(`relay:{p7.49}:events:<run_id>`, `relay_core.partitions`), so what one
script or MULTI touches for a run is always in one slot. A pool's queue is
one stream per partition. The pool admission's keys (capacity, admitted,
each tenant's share and line, the rotation) share the pool as their tag
(`relay:capacity:{interactive}`), so its fair-pool script stays in one slot,
even for the per-tenant keys it builds from a prefix. Every other key is used alone
by every command and script that touches it, so it has no tag: Redis hashes
the whole name, and each lands in a slot of its own.
"""

from __future__ import annotations

from relay_core import partitions

PREFIX = "relay:"

QUEUE_DEAD = "relay:queue:dead"
RUNNERS_GROUP = "runners"
KILL_SWITCH = "relay:kill-switch"
# The partition count the queues are laid out for, written by the first runner
# (`relay_runner.streams`): a runner configured for another count refuses to read.
LAYOUT = "relay:layout:partitions"

POOLS = ("background", "interactive")


def _tagged(partition: int) -> str:
    return f"relay:{{{partitions.tag(partition)}}}:"


def _of_run(run_id: str) -> str:
    return _tagged(partitions.of(run_id))


def queue(pool: str, partition: int) -> str:
    """One partition's stream of a runner pool's queue (`background` or `interactive`)."""
    if pool not in POOLS:
        raise ValueError(f"unknown runner pool {pool!r}")
    return f"{_tagged(partition)}queue:{pool}"


def run_queue(pool: str, run_id: str) -> str:
    """The queue stream a run's entries go to: its partition's, sharing its keys' tag."""
    return queue(pool, partitions.of(run_id))


def queue_bell(pool: str) -> str:
    """A pool's doorbell: a capped stream that every enqueue XADDs the partition
    number to after writing the entry, and idle runners block on
    (`relay_runner.streams`), since one blocking read cannot span slots."""
    if pool not in POOLS:
        raise ValueError(f"unknown runner pool {pool!r}")
    return f"relay:bell:{pool}"


def events(run_id: str) -> str:
    """The event log of one run; entry ids are the SSE event ids."""
    return f"{_of_run(run_id)}events:{run_id}"


def events_wake(hub_id: str, partition: int) -> str:
    """Wake-up stream of one events fan-out hub's reader of one partition batch
    (relay_core.fanout): an XADD here ends the reader's blocking XREAD at once
    when a run gains its first subscriber. Per process and batch, small
    (MAXLEN), with a TTL so a crashed process's key goes away."""
    return f"{_tagged(partition)}events-wake:{hub_id}"


def lease(run_id: str) -> str:
    """Who executes a run right now (value `consumer:attempt`), with a TTL."""
    return f"{_of_run(run_id)}lease:{run_id}"


def cancel(run_id: str) -> str:
    """Fast-path cancel flag; Postgres holds the durable record."""
    return f"{_of_run(run_id)}cancel:{run_id}"


def conv_messages(conversation_id: str) -> str:
    """History cache of a conversation, invalidated on every write."""
    return f"relay:conv:{conversation_id}:messages"


def daily_cost(user_id: str, day: str) -> str:
    """A user's spend (micro-dollars) on one UTC day, `YYYY-MM-DD`."""
    return f"relay:cost:daily:{user_id}:{day}"


def run_cost(run_id: str) -> str:
    """A run's reserved and settled spend (micro-dollars)."""
    return f"{_of_run(run_id)}cost:run:{run_id}"


def breaker(provider: str, model: str) -> str:
    """Circuit breaker state of one (provider, model), shared by all runners."""
    return f"relay:breaker:{provider}:{model}"


def rate_limit(key_id: str) -> str:
    """Rate-limit state of one API key (its GCRA theoretical arrival time, µs)."""
    return f"relay:ratelimit:{key_id}"


def key_streams(key_id: str) -> str:
    """Sorted set: the event streams an API key holds open (all events
    replicas), scored by when each stream's lease lapses; the per-key cap."""
    return f"relay:streams:{key_id}"


def auth_failures(client: str) -> str:
    """Failed authentications of one client address (GCRA theoretical arrival
    time, µs): the wrong-key throttle."""
    return f"relay:authfail:{client}"


def user_active_runs(user_id: str) -> str:
    """Set of a user's runs in flight, for the concurrent-runs limit."""
    return f"relay:active:{user_id}"


def revoked_keys() -> str:
    """Pub/sub channel announcing revoked API keys to every replica."""
    return "relay:keys:revoked"


def enqueued(run_id: str) -> str:
    """Marker set with the queue entry (same MULTI); its absence while the run is
    `queued` or `running` without a lease means Redis lost the entry, and the
    state reconciler enqueues the run again."""
    return f"{_of_run(run_id)}enqueued:{run_id}"


def pool_capacity(pool: str) -> str:
    """Hash: consumer name -> `capacity:expires_ms`, refreshed by each live runner.
    Tagged with the pool: the admission script reads it with `pool_admitted`."""
    return f"relay:capacity:{{{pool}}}"


def pool_admitted(pool: str) -> str:
    """Sorted set: run ids admitted to a pool, scored by when the admission lapses."""
    return f"relay:admitted:{{{pool}}}"


def pool_user_admitted(pool: str, user_id: str) -> str:
    """Sorted set: one tenant's runs admitted to a pool (its share), scored like
    `pool_admitted`. With an empty `user_id`: the prefix the admission script
    completes."""
    return f"relay:admitted:{{{pool}}}:{user_id}"


def pool_waiting(pool: str) -> str:
    """Sorted set: the tenants waiting for a slot of a pool, scored by when each
    joined or was last served (µs, Redis's clock): the rotation, lowest first."""
    return f"relay:waiting:{{{pool}}}"


def pool_user_waiting(pool: str, user_id: str) -> str:
    """Sorted set: one tenant's runs waiting for a slot, scored by arrival (µs).
    With an empty `user_id`: the prefix the admission script completes."""
    return f"relay:waiting:{{{pool}}}:{user_id}"


def pool_shares(pool: str) -> str:
    """Hash: waiting tenant -> its share of the pool (0-1]."""
    return f"relay:waiting-share:{{{pool}}}"


def pool_waiting_alive(pool: str) -> str:
    """Sorted set: waiting run -> when its gateway last polled (ms); a run that
    stopped polling drops out of the line."""
    return f"relay:waiting-alive:{{{pool}}}"
