"""Redis work after a Postgres commit: logged when it fails, never raised, bounded in time.

Postgres holds the truth; what state writes to Redis afterwards (enqueue,
the cancel flag, `done`, cleanup after a finish, a key revocation notice;
the writes themselves are `relay_core.run_protocol`'s) is best effort: a
failure is logged and repaired later (the reconciler enqueues a run whose
entry is missing, a user's slots repair themselves, a pool admission
lapses). What must not fail silently (the lease a claim takes) is not run
here: it answers 503.

Best-effort work also has a time bound: a hung Redis must not hold the answer
about a write that Postgres already made durable past the caller's own
timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Time allowed for the Redis work after a commit, within the callers' ~2 s.
BEST_EFFORT_BUDGET_S = 0.75


async def best_effort(work: Awaitable[object], *, what: str, run_id: str | None = None) -> bool:
    """Run Redis work whose failure is logged, not raised (Postgres holds the truth)."""
    try:
        async with asyncio.timeout(BEST_EFFORT_BUDGET_S):  # no task per call, unlike wait_for
            await work
    except (RedisError, TimeoutError) as exc:
        log.warning("%s failed: %s", what, type(exc).__name__, extra={"run_id": run_id})
        return False
    return True
