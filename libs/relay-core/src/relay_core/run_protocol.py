"""A run's Redis protocol, in one place: queue entry, lease, cancel flag, slots, `done`.

State, the runner and the gateway all write a run's Redis side; every such
write is a function here (key names come from `keys`), so each Lua script,
value format and TTL is written once. Reading a key (the runner's poll of
the cancel flags, the events service's XREAD) needs no helper and stays with
the reader. The consumer-group side of the queue (XREADGROUP, XAUTOCLAIM,
XACK, dead letters) is the runner's alone (`relay_runner.streams`).

Decisions:

- Every key of one run, and its queue entry, carry the run's partition tag
  (`relay_core.keys`, `relay_core.partitions`): each script and MULTI here
  touches one run's keys only, so it stays in one slot of a Redis Cluster.
  What spans tags (the user's and the pool's slots, given back with `done`)
  is a separate step after the run's own, never inside its transaction.
- Queue entry and `enqueued` marker are written in one MULTI (`enqueue`,
  or `add_queue_entry` inside a caller's MULTI), so the marker exists
  exactly when the entry was written; the state reconciler reads a missing
  marker with no lease either (`missing_from_queue`) as "Redis lost it" and
  enqueues again. The marker outlives any sane queue wait; when it expires on
  a run still queued, the reconciler enqueues it again, and claims
  deduplicate. After the MULTI, `ring` XADDs the entry's partition to the
  pool's doorbell (`keys.queue_bell`), which idle runners block on: a
  doorbell lost or not rung only delays the claim until the runners' next
  sweep of every partition (`RELAY_BLOCK_MS`), so its failure is logged,
  not raised.
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
  fail (no group: Redis lost its data); the renewal still counts. Lease and
  queue stream share the run's tag: the run's queue partition IS its
  partition.
- Releasing it is compare-and-delete (`release_lease` on the exact value,
  `release_finished` on the attempt), so a late release never removes the
  lease of a newer attempt.
- A run's slots are taken at submit by the gateway's admission (the
  user's active-runs set, and for an interactive run its pool admission),
  under the run id the gateway minted, and given back here by id, by whoever
  ends the run: the `done` write, or `release_slots` for a run that was never
  created. The two slots live under different tags, so they are given back
  by one pipeline of two commands, not a transaction: either may fail alone,
  and each repairs itself (the user's set against state, `active_runs`; a
  pool admission lapses at its score).
- `done` (`write_done`) is the end of a run's Redis side. First, in one
  script on the run's partition: the terminal event, the stream's TTL, its
  `enqueued` marker gone. Then its slots given back (above): a `done`
  written and a slot release lost is a leak the repairs above cover; the
  slots never go back before `done` is stored. It is written unfenced: a
  runner writes it only after state accepted the finish of its attempt
  (state's fencing already proved it current, and finishing released the
  lease), and state writes it for a run no runner will write it for
  (cancelled while queued), so a run cancelled before any runner saw it
  does not hold a slot. A writer that knows the id of the run's last event
  (`after_id`: the runner) has the script check it is still the stream's
  last: after a failover that lost events, or a retry of a `done` that
  landed, it gets the stream's tail back instead (`StreamTail`), as the
  runner's event writes do (`relay_runner.eventlog`).
- The cancel flag is the fast path only (Postgres holds the durable
  request); it lives as long as the marker, longer than any run.
- Functions raise `RedisError`; callers decide what is an error (state's
  claim answers 503) and what is best effort (what follows a commit).
- Scripts go by EVAL (not registered per client): the module holds no client,
  and a pipeline carries them as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from relay_core import events, keys, partitions
from relay_core.rediscalls import RedisCalls

__all__ = [
    "BELL_MAXLEN",
    "CANCEL_FLAG_TTL_S",
    "ENQUEUED_MARKER_TTL_S",
    "RENEW_LEASE",
    "StreamTail",
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
    "ring",
    "set_lease",
    "stream_tail",
    "take_lease",
    "write_done",
]

log = logging.getLogger(__name__)

ENQUEUED_MARKER_TTL_S = 7 * 24 * 3600
CANCEL_FLAG_TTL_S = ENQUEUED_MARKER_TTL_S  # the flag outlives any run, as the marker does
BELL_MAXLEN = 1000  # a doorbell is read as it rings; older rings are of no use

# A run's queue entry and its `enqueued` marker at once (what `add_queue_entry`
# puts in a MULTI), as one call `RedisCalls` can send with others. KEYS: the
# pool's queue stream of the run's partition, the marker (one hash tag).
# ARGV: the marker's TTL (s), then the entry's field/value pairs.
_ENQUEUE = """
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return 1
"""

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

# The tail check shared by every append to a run's stream that knows the id of
# the stream's last entry (ARGV `expected`, "" for no check): a local function
# answering nil when the stream still ends there, else the tail as it is
# {'tail', last id or '', its event type, its data} (see `StreamTail`).
TAIL_CHECK = """
local function tail_moved(key, expected)
  if expected == '' then return nil end
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  if last and last[1] == expected then return nil end
  if not last then return {'tail', '', '', ''} end
  local f = last[2]
  local kind, data = '', ''
  for i = 1, #f, 2 do
    if f[i] == 'event' then kind = f[i + 1] elseif f[i] == 'data' then data = f[i + 1] end
  end
  return {'tail', last[1], kind, data}
end
"""

# KEYS: events stream, enqueued marker. ARGV: expected last id ("" none), maxlen
# ("" none), retention s, event type, data. The entry id, or the tail (TAIL_CHECK).
_WRITE_DONE = (
    TAIL_CHECK
    + """
local moved = tail_moved(KEYS[1], ARGV[1])
if moved then return moved end
local id
if ARGV[2] == '' then
  id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[4], 'data', ARGV[5])
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[4], 'data', ARGV[5])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2])
return id
"""
)


@dataclass(frozen=True, slots=True)
class StreamTail:
    """What an append that expected another last entry found at the stream's end
    (nothing: `last_id` None). The writer decides: its own earlier write that
    landed although its reply was lost, or events the store lost (a failover)."""

    last_id: str | None
    event: str
    data: str


def stream_tail(reply: Any) -> StreamTail | None:
    """The `StreamTail` of a script's reply built by TAIL_CHECK, None for any other."""
    if isinstance(reply, list) and len(reply) == 4 and reply[0] == "tail":
        return StreamTail(str(reply[1]) or None, str(reply[2]), str(reply[3]))
    return None


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
    """Queue `run_id` on its pool (the stream of its partition) and set its
    `enqueued` marker, in `pipe`: a MULTI (`transaction=True`) the caller
    executes, with its own commands on the same partition if it has any.
    Ring the doorbell after it executed (`ring`). `traceparent`: the run's W3C
    trace context (`runs.traceparent`), carried in the entry so the runner's
    spans join the run's trace (relay_core.tracing)."""
    pipe.xadd(keys.run_queue(pool, run_id), _entry(run_id, traceparent))  # type: ignore[arg-type]
    pipe.set(keys.enqueued(run_id), "1", ex=ENQUEUED_MARKER_TTL_S)


def _entry(run_id: str, traceparent: str | None) -> dict[str, str]:
    fields = {"run_id": run_id}
    if traceparent:
        fields["traceparent"] = traceparent
    return fields


async def ring(
    *, redis: Redis, pool: str, run_ids: Iterable[str], calls: RedisCalls | None = None
) -> None:
    """Tell idle runners which partitions just got entries; never raises (a
    doorbell lost only delays a claim until the runners' next sweep). With
    `calls`, the rings go in its next pipeline."""
    found = sorted({partitions.of(run_id) for run_id in run_ids})
    if not found:
        return
    bell = keys.queue_bell(pool)
    try:
        if calls is not None:
            for partition in found:
                await calls.command(
                    "XADD", bell, "MAXLEN", "~", BELL_MAXLEN, "*", "p", str(partition)
                )
            return
        async with redis.pipeline(transaction=False) as pipe:
            for partition in found:
                pipe.xadd(bell, {"p": str(partition)}, maxlen=BELL_MAXLEN, approximate=True)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.info("doorbell not rung (%s); runners find the entry on their sweep", exc)


async def enqueue(
    *,
    redis: Redis,
    run_id: str,
    pool: str,
    traceparent: str | None = None,
    calls: RedisCalls | None = None,
) -> None:
    """The queue entry and its marker, at once (one script); then the doorbell.
    With `calls` (state creating many runs at the same moment), both go in its
    coalesced pipelines: two round trips for all of them instead of two each."""
    entry_keys = [keys.run_queue(pool, run_id), keys.enqueued(run_id)]
    args: list[Any] = [ENQUEUED_MARKER_TTL_S]
    for field, value in _entry(run_id, traceparent).items():
        args += [field, value]
    if calls is None:
        await redis.register_script(_ENQUEUE)(keys=entry_keys, args=args)
    else:
        await calls.script(calls.register(_ENQUEUE), entry_keys, args)
    await ring(redis=redis, pool=pool, run_ids=[run_id], calls=calls)


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
    *,
    redis: Redis,
    run_id: str,
    consumer: str,
    attempt: int,
    ttl_s: float,
    calls: RedisCalls | None = None,
) -> tuple[bool, str]:
    """(taken now, current value). Not taken: the value names the holder.
    With `calls`, in its next coalesced pipeline."""
    value = lease_value(consumer, attempt)
    if calls is None:
        taken, current = await redis.eval(_TAKE_LEASE, 1, keys.lease(run_id), value, _ms(ttl_s))
    else:
        taken, current = await calls.script(
            calls.register(_TAKE_LEASE), [keys.lease(run_id)], [value, _ms(ttl_s)]
        )
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
        [keys.lease(run_id), keys.run_queue(pool, run_id)],
        [value, _ms(ttl_s), keys.RUNNERS_GROUP, consumer, entry_id],
    )


async def release_lease(*, redis: Redis, run_id: str, value: str) -> bool:
    """Delete the lease if it still holds `value`; True when deleted."""
    return bool(await redis.eval(_RELEASE_LEASE, 1, keys.lease(run_id), value))


async def release_finished(
    *, redis: Redis, run_id: str, attempt: int, calls: RedisCalls | None = None
) -> None:
    """After `attempt` finished the run: drop its `enqueued` marker, and its lease
    if that attempt still holds it. With `calls`, in its next coalesced pipeline."""
    if calls is not None:
        await asyncio.gather(
            calls.command_soon("DEL", keys.enqueued(run_id)),
            calls.script_soon(
                calls.register(_RELEASE_LEASE_OF_ATTEMPT),
                [keys.lease(run_id)],
                [_attempt_suffix(attempt)],
            ),
        )
        return
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(keys.enqueued(run_id))
        pipe.eval(_RELEASE_LEASE_OF_ATTEMPT, 1, keys.lease(run_id), _attempt_suffix(attempt))
        await pipe.execute()


# the cancel flag


async def flag_cancel(*, redis: Redis, run_id: str) -> None:
    """Raise the fast-path cancel flag the runners poll (`relay_runner.stopflags`)."""
    await redis.set(keys.cancel(run_id), "1", ex=CANCEL_FLAG_TTL_S)


# the slots


async def release_slots(
    *,
    redis: Redis,
    run_id: str,
    user_id: str | None,
    pool: str | None = None,
    calls: RedisCalls | None = None,
) -> None:
    """Give back the slots taken for `run_id` at submit (its user's active-runs
    slot, and with `pool` its pool admission): one pipeline, two tags, no
    transaction (each slot repairs itself if its command is lost). With
    `calls`, in its next coalesced pipeline."""
    removals: list[tuple[str, str, str]] = []
    if user_id:
        removals.append(("SREM", keys.user_active_runs(user_id), run_id))
    if pool:
        removals.append(("ZREM", keys.pool_admitted(pool), run_id))
        if user_id:  # the tenant's share of the pool (relay_core.capacity)
            removals.append(("ZREM", keys.pool_user_admitted(pool, user_id), run_id))
    if not removals:
        return
    if calls is not None:
        await asyncio.gather(*(calls.command_soon(*command) for command in removals))
        return
    async with redis.pipeline(transaction=False) as pipe:
        for command in removals:
            pipe.execute_command(*command)
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
    after_id: str | None = None,
    calls: RedisCalls | None = None,
) -> str | StreamTail:
    """The terminal event, the stream's TTL (`retention_s`) and the marker dropped,
    in one script on the run's partition; then the run's slots given back
    (unfenced: see above). `maxlen` caps the stream (approximately) as every
    event write does. With `after_id`, only if the stream still ends there:
    otherwise nothing is written and the tail found is returned.
    Returns the `done` entry's id. With `calls` (a runner finishing many runs
    at the same moment), both steps go in its coalesced pipelines."""
    fields = events.encode_fields(events.done(status, cost_usd))
    done_keys = [keys.events(run_id), keys.enqueued(run_id)]
    args: list[str | int] = [
        after_id or "",
        "" if maxlen is None else str(maxlen),
        max(1, int(retention_s)),
        fields["event"],
        fields["data"],
    ]
    if calls is None:
        reply = await redis.eval(_WRITE_DONE, len(done_keys), *done_keys, *args)
    else:
        reply = await calls.script(calls.register(_WRITE_DONE), done_keys, args)
    tail = stream_tail(reply)
    if tail is not None:
        return tail
    await release_slots(redis=redis, run_id=run_id, user_id=user_id, pool=pool, calls=calls)
    return str(reply)
