"""Every Redis key, stream and group name Relay uses, in one place.

No other module spells a `relay:` literal. Keys that belong to one run or one
user take it as an argument so a grep for the function finds every user.
"""

from __future__ import annotations

PREFIX = "relay:"

QUEUE_BACKGROUND = "relay:queue:background"
QUEUE_INTERACTIVE = "relay:queue:interactive"
QUEUE_DEAD = "relay:queue:dead"
RUNNERS_GROUP = "runners"
KILL_SWITCH = "relay:kill-switch"

POOLS = ("background", "interactive")


def queue(pool: str) -> str:
    """The queue stream of a runner pool (`background` or `interactive`)."""
    if pool == "background":
        return QUEUE_BACKGROUND
    if pool == "interactive":
        return QUEUE_INTERACTIVE
    raise ValueError(f"unknown runner pool {pool!r}")


def events(run_id: str) -> str:
    """The event log of one run; entry ids are the SSE event ids."""
    return f"relay:events:{run_id}"


def events_wake(hub_id: str) -> str:
    """Wake-up stream of one events fan-out hub (relay_core.fanout): an XADD here
    ends the hub reader's blocking XREAD at once when a run gains its first
    subscriber. Per process, small (MAXLEN), with a TTL so a crashed process's
    key goes away."""
    return f"relay:events-wake:{hub_id}"


def lease(run_id: str) -> str:
    """Who executes a run right now (value `consumer:attempt`), with a TTL."""
    return f"relay:lease:{run_id}"


def cancel(run_id: str) -> str:
    """Fast-path cancel flag; Postgres holds the durable record."""
    return f"relay:cancel:{run_id}"


def conv_messages(conversation_id: str) -> str:
    """History cache of a conversation, invalidated on every write."""
    return f"relay:conv:{conversation_id}:messages"


def daily_cost(user_id: str, day: str) -> str:
    """A user's spend (micro-dollars) on one UTC day, `YYYY-MM-DD`."""
    return f"relay:cost:daily:{user_id}:{day}"


def run_cost(run_id: str) -> str:
    """A run's reserved and settled spend (micro-dollars)."""
    return f"relay:cost:run:{run_id}"


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
    return f"relay:enqueued:{run_id}"


def pool_capacity(pool: str) -> str:
    """Hash: consumer name -> `capacity:expires_ms`, refreshed by each live runner."""
    return f"relay:capacity:{pool}"


def pool_admitted(pool: str) -> str:
    """Sorted set: run ids admitted to a pool, scored by when the admission lapses."""
    return f"relay:admitted:{pool}"


def pool_user_admitted(pool: str, user_id: str) -> str:
    """Sorted set: one tenant's runs admitted to a pool (its share), scored like
    `pool_admitted`. With an empty `user_id`: the prefix the admission script
    completes."""
    return f"relay:admitted:{pool}:{user_id}"


def pool_waiting(pool: str) -> str:
    """Sorted set: the tenants waiting for a slot of a pool, scored by when each
    joined or was last served (µs, Redis's clock): the rotation, lowest first."""
    return f"relay:waiting:{pool}"


def pool_user_waiting(pool: str, user_id: str) -> str:
    """Sorted set: one tenant's runs waiting for a slot, scored by arrival (µs).
    With an empty `user_id`: the prefix the admission script completes."""
    return f"relay:waiting:{pool}:{user_id}"


def pool_shares(pool: str) -> str:
    """Hash: waiting tenant -> its share of the pool (0-1]."""
    return f"relay:waiting-share:{pool}"


def pool_waiting_alive(pool: str) -> str:
    """Sorted set: waiting run -> when its gateway last polled (ms); a run that
    stopped polling drops out of the line."""
    return f"relay:waiting-alive:{pool}"
