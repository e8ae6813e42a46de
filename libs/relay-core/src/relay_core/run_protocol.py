"""A run's Redis protocol, in one place: queue entry, lease, cancel flag, slots, `done`.

State, the runner and the gateway all write a run's Redis side; every such
write is a function here (key names come from `keys`), so each Lua script,
value format and TTL is written once. Reading a key (the runner's poll of
the cancel flags, the events service's XREAD) needs no helper and stays with
the reader. The consumer-group side of the queue (XREADGROUP, XAUTOCLAIM,
XACK, dead letters) is the runner's alone (`relay_runner.streams`).

Decisions:

- Queue entry and `enqueued` marker are written in one MULTI (`enqueue`,
  or `add_queue_entry` inside a caller's MULTI), so the marker exists
  exactly when the entry was written; the state reconciler reads a missing
  marker with no lease either (`missing_from_queue`) as "Redis lost it" and
  enqueues again. The marker outlives any sane queue wait; when it expires on
  a run still queued, the reconciler enqueues it again, and claims
  deduplicate.
- The lease is `consumer:attempt` (`lease_value`) with a TTL. The attempt is
  the fencing token: event writes are fenced on this exact value
  (`relay_runner.publish`).
- Taking it is one Lua script (`take_lease`: set if absent, else report the
  holder) so two claimers never both see it free.
- Renewing it (`RENEW_LEASE`, run by the runner's heartbeat thread on its
  own synchronous client) is compare-and-PEXPIRE: a lease that holds another
  value, or none, is lost, and a missing lease is never recreated (a newer
  attempt may have come and gone, and resurrecting an old attempt's lease
  would let its late events through the fence). The same script refreshes
  the idle time of the run's queue entry (XCLAIM ... JUSTID, which does not
  count as a delivery), so XAUTOCLAIM in other runners, which takes entries
  idle longer than the lease TTL, only ever finds the entries of dead
  runners; and it does so only while the lease is still ours, so a runner
  that wakes up from a pause (SIGSTOP, a VM freeze) does not pull back the
  entry that the runner which took the run over now owns. The XCLAIM may
  fail (no group: Redis lost its data); the renewal still counts.
- Releasing it is compare-and-delete (`release_lease` on the exact value,
  `release_finished` on the attempt), so a late release never removes the
  lease of a newer attempt.
- A run's slots are taken at submit by the gateway's admission script (the
  user's active-runs set, and for an interactive run its pool admission),
  under the run id the gateway minted, and given back here by id, by whoever
  ends the run: the `done` write, or `release_slots` for a run that was never
  created.
- `done` (`write_done`) is the end of a run's Redis side: the terminal
  event, the stream's TTL, the run out of its user's active runs and of its
  pool's admissions, and its `enqueued` marker gone, in one transaction. It
  is written unfenced: a runner writes it only after state accepted the
  finish of its attempt (state's fencing already proved it current, and
  finishing released the lease), and state writes it for a run no runner
  will write it for (cancelled while queued), so a run cancelled before any
  runner saw it does not hold a slot.
- The cancel flag is the fast path only (Postgres holds the durable
  request); it lives as long as the marker, longer than any run.
- Functions raise `RedisError`; callers decide what is an error (state's
  claim answers 503) and what is best effort (what follows a commit).
- Scripts go by EVAL (not registered per client): the module holds no client,
  and a pipeline carries them as they are.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from relay_core import events, keys

__all__ = [
    "CANCEL_FLAG_TTL_S",
    "ENQUEUED_MARKER_TTL_S",
    "RENEW_LEASE",
    "add_queue_entry",
    "enqueue",
    "flag_cancel",
    "lease_holder",
    "lease_value",
    "missing_from_queue",
    "release_finished",
    "release_lease",
    "release_slots",
    "release_user_slots",
    "renew_lease_call",
    "set_lease",
    "take_lease",
    "write_done",
]

ENQUEUED_MARKER_TTL_S = 7 * 24 * 3600
CANCEL_FLAG_TTL_S = ENQUEUED_MARKER_TTL_S  # the flag outlives any run, as the marker does

# KEYS: lease. ARGV: value, ttl ms. Returns {1, value} when taken, {0, holder's value}.
_TAKE_LEASE = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, ARGV[1]}
end
return {0, cur}
"""

# KEYS: lease, queue. ARGV: value, ttl ms, group, consumer, entry id. 1 renewed, 0 lost.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.pcall('XCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, ARGV[5], 'JUSTID')
return 1
"""

# KEYS: lease. ARGV: value. Deletes only that exact lease.
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lease. ARGV: ":attempt". Deletes the lease of that attempt, whoever holds it.
_RELEASE_LEASE_OF_ATTEMPT = """
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, -string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


# the lease value


def lease_value(consumer: str, attempt: int) -> str:
    """The value of a lease held by `consumer` for `attempt`: `consumer:attempt`."""
    return f"{consumer}:{attempt}"


def lease_holder(value: str) -> str:
    """The consumer part of a lease value (a consumer name may hold colons)."""
    return value.rsplit(":", 1)[0]


def _attempt_suffix(attempt: int) -> str:
    return lease_value("", attempt)


# the queue entry


def add_queue_entry(
    pipe: Pipeline, *, run_id: str, pool: str, traceparent: str | None = None
) -> None:
    """Queue `run_id` on its pool and set its `enqueued` marker, in `pipe`: a MULTI
    (`transaction=True`) the caller executes, with its own commands if it has any.
    `traceparent`: the run's W3C trace context (`runs.traceparent`), carried in the
    entry so the runner's spans join the run's trace (relay_core.tracing)."""
    fields = {"run_id": run_id}
    if traceparent:
        fields["traceparent"] = traceparent
    pipe.xadd(keys.queue(pool), fields)  # type: ignore[arg-type]
    pipe.set(keys.enqueued(run_id), "1", ex=ENQUEUED_MARKER_TTL_S)


async def enqueue(*, redis: Redis, run_id: str, pool: str, traceparent: str | None = None) -> None:
    """The queue entry and its marker, in one MULTI."""
    async with redis.pipeline(transaction=True) as pipe:
        add_queue_entry(pipe, run_id=run_id, pool=pool, traceparent=traceparent)
        await pipe.execute()


async def missing_from_queue(*, redis: Redis, run_ids: list[str]) -> list[str]:
    """The runs with neither an `enqueued` marker nor a lease."""
    if not run_ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for run_id in run_ids:
            pipe.exists(keys.enqueued(run_id), keys.lease(run_id))
        counts = await pipe.execute()
    return [run_id for run_id, count in zip(run_ids, counts, strict=True) if count == 0]


# the lease


async def take_lease(
    *, redis: Redis, run_id: str, consumer: str, attempt: int, ttl_s: float
) -> tuple[bool, str]:
    """(taken now, current value). Not taken: the value names the holder."""
    value = lease_value(consumer, attempt)
    taken, current = await redis.eval(_TAKE_LEASE, 1, keys.lease(run_id), value, _ms(ttl_s))
    return bool(taken), str(current)


async def set_lease(
    *, redis: Redis, run_id: str, consumer: str, attempt: int, ttl_s: float
) -> None:
    """Write the lease unconditionally (the claimer already holds it, for another attempt)."""
    await redis.set(keys.lease(run_id), lease_value(consumer, attempt), px=_ms(ttl_s))


def renew_lease_call(
    *, run_id: str, pool: str, value: str, ttl_s: float, consumer: str, entry_id: str
) -> tuple[list[str], list[str | int]]:
    """(KEYS, ARGV) of `RENEW_LEASE` for one held lease and its queue entry. The
    caller runs the script on its own client (the runner's heartbeat thread
    uses a synchronous one, see `relay_runner.lease`)."""
    return (
        [keys.lease(run_id), keys.queue(pool)],
        [value, _ms(ttl_s), keys.RUNNERS_GROUP, consumer, entry_id],
    )


async def release_lease(*, redis: Redis, run_id: str, value: str) -> bool:
    """Delete the lease if it still holds `value`; True when deleted."""
    return bool(await redis.eval(_RELEASE_LEASE, 1, keys.lease(run_id), value))


async def release_finished(*, redis: Redis, run_id: str, attempt: int) -> None:
    """After `attempt` finished the run: drop its `enqueued` marker, and its lease
    if that attempt still holds it."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(keys.enqueued(run_id))
        pipe.eval(_RELEASE_LEASE_OF_ATTEMPT, 1, keys.lease(run_id), _attempt_suffix(attempt))
        await pipe.execute()


# the cancel flag


async def flag_cancel(*, redis: Redis, run_id: str) -> None:
    """Raise the fast-path cancel flag the runners poll (`relay_runner.stopflags`)."""
    await redis.set(keys.cancel(run_id), "1", ex=CANCEL_FLAG_TTL_S)


# the slots


def _add_slot_release(
    pipe: Pipeline, *, run_id: str, user_id: str | None, pool: str | None
) -> None:
    if user_id:
        pipe.srem(keys.user_active_runs(user_id), run_id)
    if pool:
        pipe.zrem(keys.pool_admitted(pool), run_id)
        if user_id:  # the tenant's share of the pool (relay_core.capacity)
            pipe.zrem(keys.pool_user_admitted(pool, user_id), run_id)


async def release_slots(
    *, redis: Redis, run_id: str, user_id: str | None, pool: str | None = None
) -> None:
    """Give back the slots taken for `run_id` at submit (its user's active-runs
    slot, and with `pool` its pool admission), in one MULTI."""
    async with redis.pipeline(transaction=True) as pipe:
        _add_slot_release(pipe, run_id=run_id, user_id=user_id, pool=pool)
        await pipe.execute()


async def release_user_slots(*, redis: Redis, user_id: str, run_ids: Collection[str]) -> int:
    """Give back user slots that leaked (runs over or never created); how many went."""
    if not run_ids:
        return 0
    return int(await redis.srem(keys.user_active_runs(user_id), *run_ids))


# done


async def write_done(
    *,
    redis: Redis,
    run_id: str,
    user_id: str | None,
    pool: str,
    status: str,
    cost_usd: float,
    retention_s: float,
    maxlen: int | None = None,
) -> None:
    """The terminal event, the stream's TTL (`retention_s`), the run's slots given
    back and its marker dropped, in one transaction (unfenced: see above).
    `maxlen` caps the stream (approximately) as every event write does."""
    stream = keys.events(run_id)
    fields: dict[Any, Any] = events.encode_fields(events.done(status, cost_usd))
    async with redis.pipeline(transaction=True) as pipe:
        if maxlen is None:
            pipe.xadd(stream, fields)
        else:
            pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
        pipe.expire(stream, max(1, int(retention_s)))
        pipe.delete(keys.enqueued(run_id))
        _add_slot_release(pipe, run_id=run_id, user_id=user_id, pool=pool)
        await pipe.execute()
