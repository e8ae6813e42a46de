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
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from relay_state import queue
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
            SELECT id, kind, seq FROM runs
            WHERE status IN ('queued', 'running') AND seq > $1
              AND created_at < now() - make_interval(secs => $2)
            ORDER BY seq LIMIT $3
            """,
            after_seq,
            min_age_s,
            batch,
        )
        kinds = {r["id"]: r["kind"] for r in found}
        missing = await queue.missing_from_queue(redis=redis, run_ids=list(kinds))
        for run_id in missing:
            await queue.enqueue(redis=redis, run_id=run_id, kind=kinds[run_id])
            REENQUEUED.inc()
            log.warning("re-enqueued a run Redis had lost", extra={"run_id": run_id})
    next_after = found[-1]["seq"] if len(found) == batch else 0
    return PassResult(len(found), missing, locked=True), next_after


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
            except Exception as exc:  # keep the loop alive through any outage
                log.warning("reconcile pass failed, retrying next tick: %s", describe(exc))
                continue
            if result.reenqueued:
                log.info("reconcile pass re-enqueued %d runs", len(result.reenqueued))
