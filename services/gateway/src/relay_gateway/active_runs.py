"""Per-user concurrent runs: a Redis set of the user's runs not yet finished.

Decisions, and why:

- **One set, shared with the runner.** `relay_core.keys.user_active_runs(user)`
  is a plain set of run ids. The gateway adds a run at submit (before state
  records it, under the id the gateway minted); whoever writes the run's
  terminal `done` removes it in the same MULTI
  (`relay_core.run_protocol.write_done`): the runner, or state for a run
  cancelled while still queued. Queued, deferred and running runs all count:
  the limit is on runs accepted and not finished. Every removal is a
  `run_protocol` function.
- **Atomic check-and-add.** One Lua script (`TAKE_SCRIPT`) compares the
  set's size with the limit and adds the run only if it fits, so concurrent
  submissions on any number of gateway replicas never push a user past the
  limit. It runs in the submission's admission round trip (`admit_script`).
- **Leaks repair themselves, no expiry guess.** A member can outlive its run
  only when a `done` was never written with its `SREM` (a runner lost Redis
  for a whole lease, a gateway died between taking the slot and creating the
  run). A time-based expiry would either free slots of legitimately long runs
  or keep leaked ones for hours, so instead, when a user looks full, the
  gateway asks state for the status of the members (one batch call) and
  removes those that are terminal, and those that name no run once their id
  (which carries its minting time, see `runids`) is older than
  `UNKNOWN_GRACE_S`, which is far longer than a submission takes. The
  admission (`admission`) then tries once more. The cost is paid only by a
  user at the limit.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis

from relay_core import keys, run_protocol
from relay_core.events import TERMINAL_STATUSES
from relay_core.state_client import StateClient, StateError
from relay_gateway import runids

log = logging.getLogger(__name__)

# A member naming no run is a leak only once its submission is surely over.
UNKNOWN_GRACE_S = 60.0
# State's batch status call takes at most this many ids.
REPAIR_BATCH = 1000

# KEYS: the user's active set. ARGV: run_id, limit. Returns {taken (0/1), size}.
TAKE_SCRIPT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return {1, redis.call('SCARD', KEYS[1])}
end
local size = redis.call('SCARD', KEYS[1])
if size >= tonumber(ARGV[2]) then return {0, size} end
redis.call('SADD', KEYS[1], ARGV[1])
return {1, size + 1}
"""


class ActiveRuns:
    def __init__(self, redis: Redis, state: StateClient) -> None:
        self._redis = redis
        self._state = state

    async def count(self, user_id: str) -> int:
        return int(await self._redis.scard(keys.user_active_runs(user_id)))

    async def repair(self, user_id: str) -> int:
        """Remove members whose run is over or was never created; returns how many."""
        name = keys.user_active_runs(user_id)
        found: list[str] = await self._redis.srandmember(name, REPAIR_BATCH)  # type: ignore[assignment]
        members = [str(m) for m in found or []]
        if not members:
            return 0
        try:
            statuses = await self._state.run_statuses(members)
        except StateError as exc:
            log.warning("active-runs repair skipped: %s", exc, extra={"user_id": user_id})
            return 0
        stale = [m for m in members if _stale(m, statuses.get(m))]
        if not stale:
            return 0
        removed = await run_protocol.release_user_slots(
            redis=self._redis, user_id=user_id, run_ids=stale
        )
        log.warning(
            "removed leaked active runs of a user",
            extra={"user_id": user_id, "removed": removed, "run_ids": stale[:20]},
        )
        return removed


def _stale(run_id: str, status: str | None) -> bool:
    if status is not None:
        return status in TERMINAL_STATUSES
    minted = runids.minted_at(run_id)
    if minted is None:
        return True
    age = time.time() - minted
    # Minted long ago: its run was never created. "Minted" in the future: not a
    # gateway's id (state's own ids are random), so not a submission in flight.
    return age > UNKNOWN_GRACE_S or age < -UNKNOWN_GRACE_S
