"""The reconciler: Postgres is the truth, so runs Redis lost are enqueued again.

A run that is `queued` or `running` must be either on its queue (the
`enqueued` marker, written in the same MULTI as the queue entry) or held by a
runner (a live lease). When both are missing, Redis lost its data or the
enqueue after commit failed: the run is put back on its queue. A duplicate
entry is harmless (a claim of a leased or finished run is refused), a missing
one would be a run that never ends.

Decisions:

- One replica does it: each pass runs under a transaction-scoped advisory
  lock (`pg_try_advisory_xact_lock`); the others skip that tick. The lock goes
  away with the transaction, even if the replica dies.
- A pass is bounded (`reconcile_batch` runs) and walks the runs in flight in
  `seq` order from where the previous pass stopped, so a large backlog is
  covered over several passes instead of one long one.
- Runs younger than `min_age_s` are skipped: their enqueue may simply not
  have happened yet (it runs right after the commit).
- Any failure (Postgres or Redis down, schema not migrated yet) is logged and
  retried on the next tick; the loop never dies.
- A deferred run (waiting behind the active run of its conversation) is not
  lost, it is waiting: it is never enqueued here while deferred. A deferred
  run whose conversation has no active run left is a hand-off that did not
  happen (a run ended by a path that skipped it): `hand_off_orphans` makes it
  active and enqueues it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from relay_core import run_protocol
from relay_state import handoff
from relay_state.db import Database, describe
from relay_state.metrics import REENQUEUED

log = logging.getLogger(__name__)

# Arbitrary 64-bit constant naming the reconciler lock ("relay reconcile").
RECONCILE_LOCK_ID = 0x72656C61795F7263
DEFAULT_MIN_AGE_S = 5.0


@dataclass
class PassResult:
    examined: int
    reenqueued: list[str]
    locked: bool


async def reconcile_once(
    *,
    db: Database,
    redis: Redis,
    batch: int,
    after_seq: int = 0,
    min_age_s: float = DEFAULT_MIN_AGE_S,
) -> tuple[PassResult, int]:
    """One pass; returns its result and the `after_seq` for the next pass."""
    async with db.transaction() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RECONCILE_LOCK_ID):
            return PassResult(0, [], locked=False), after_seq
        found = await conn.fetch(
            """
            SELECT id, kind, seq, traceparent FROM runs
            WHERE status IN ('queued', 'running') AND NOT deferred AND seq > $1
              AND created_at < now() - make_interval(secs => $2)
            ORDER BY seq LIMIT $3
            """,
            after_seq,
            min_age_s,
            batch,
        )
        kinds = {r["id"]: r["kind"] for r in found}
        contexts = {r["id"]: r["traceparent"] for r in found}
        missing = await run_protocol.missing_from_queue(redis=redis, run_ids=list(kinds))
        for run_id in missing:
            await run_protocol.enqueue(
                redis=redis, run_id=run_id, pool=kinds[run_id], traceparent=contexts[run_id]
            )
            REENQUEUED.inc()
            log.warning("re-enqueued a run Redis had lost", extra={"run_id": run_id})
    next_after = found[-1]["seq"] if len(found) == batch else 0
    return PassResult(len(found), missing, locked=True), next_after


async def hand_off_orphans(*, db: Database, redis: Redis, batch: int) -> list[str]:
    """Promote (and enqueue) the oldest deferred run of conversations with no active run."""
    async with db.connection() as conn:
        found = await conn.fetch(
            """
            SELECT DISTINCT d.conversation_id FROM runs d
            WHERE d.deferred AND d.status = 'queued'
              AND NOT EXISTS (SELECT 1 FROM runs a
                              WHERE a.conversation_id = d.conversation_id
                                AND a.status IN ('queued', 'running') AND NOT a.deferred)
            LIMIT $1
            """,
            batch,
        )
    promoted: list[str] = []
    for record in found:
        async with db.transaction() as conn:
            row = await handoff.promote_next(conn=conn, conversation_id=record["conversation_id"])
        if row is not None:
            # A failure here leaves a queued run without a marker: the next pass enqueues it.
            await run_protocol.enqueue(
                redis=redis, run_id=row["id"], pool=row["kind"], traceparent=row["traceparent"]
            )
            REENQUEUED.inc()
            log.warning("handed off a deferred run left waiting", extra={"run_id": row["id"]})
            promoted.append(row["id"])
    return promoted


class Reconciler:
    """The periodic loop around `reconcile_once`, started in the app's lifespan."""

    def __init__(
        self,
        *,
        db: Database,
        redis: Redis,
        interval_s: float,
        batch: int,
        min_age_s: float = DEFAULT_MIN_AGE_S,
    ) -> None:
        self._db = db
        self._redis = redis
        self._interval_s = interval_s
        self._batch = batch
        self._min_age_s = min_age_s
        self._after_seq = 0

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                result, self._after_seq = await reconcile_once(
                    db=self._db,
                    redis=self._redis,
                    batch=self._batch,
                    after_seq=self._after_seq,
                    min_age_s=self._min_age_s,
                )
                if result.locked:
                    await hand_off_orphans(db=self._db, redis=self._redis, batch=self._batch)
            except Exception as exc:  # keep the loop alive through any outage
                log.warning("reconcile pass failed, retrying next tick: %s", describe(exc))
                continue
            if result.reenqueued:
                log.info("reconcile pass re-enqueued %d runs", len(result.reenqueued))
