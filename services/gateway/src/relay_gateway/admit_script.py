"""The admission script: a submission's one Redis call (kill switch, the user's runs, a pool slot).

Why one call: checking the kill switch, then taking the user's concurrent-run
slot, then an interactive pool slot were three round trips to Redis for every
submission (four with the rate limit); under a burst of chats the gateway's
Redis connections became the queue. One Lua script does all three, in that
order, and stops at the first refusal, so a refused submission takes nothing
it would have to give back, and a kill switch turned on cannot slip between
its check and an admission.

Each rule is still written once: the script calls the user-slot script of
`active_runs` and the pool admission script of `relay_core.capacity` as local
Lua functions (their `KEYS` and `ARGV` become the functions' parameters).
The slots it takes are given back by `relay_core.run_protocol` (the run's
`done`, or `release_slots` for a run never created).

Named for what it is rather than "gate", which in Relay names one thing:
the agent loop's model gate (circuit breakers, `relay_runner.gate`).
"""

from __future__ import annotations

from enum import IntEnum

from redis.asyncio import Redis

from relay_core import keys
from relay_core.capacity import ADMIT_SCRIPT, admit_args, admit_keys
from relay_gateway.active_runs import TAKE_SCRIPT
from relay_gateway.capacity import POOL


class Outcome(IntEnum):
    ADMITTED = 0  # every slot asked for is taken
    KILLED = 1  # the kill switch is on: nothing taken
    USER_FULL = 2  # the user is at the limit: nothing taken
    # No interactive slot for this run now (none free, the tenant at its share,
    # or another tenant's turn): the user's slot IS taken, and the run waits in
    # its tenant's queue (relay_core.capacity): admit it or make it leave.
    POOL_FULL = 3


def _function(name: str, script: str) -> str:
    return f"local function {name}(KEYS, ARGV)\n{script}\nend\n"


# KEYS: kill switch, user's active runs, then the pool admission's five
# (relay_core.capacity.admit_keys). ARGV: run_id, user limit, "1" to take a
# pool slot, then the pool admission's ten (relay_core.capacity.admit_args).
SUBMIT_SCRIPT = (
    _function("take_user_slot", TAKE_SCRIPT)
    + _function("take_pool_slot", ADMIT_SCRIPT)
    + """
if redis.call('GET', KEYS[1]) == '1' then return 1 end
if take_user_slot({KEYS[2]}, {ARGV[1], ARGV[2]})[1] == 0 then return 2 end
if ARGV[3] == '1' then
  local pool_keys = {KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]}
  local pool_args = {}
  for i = 4, #ARGV do pool_args[#pool_args + 1] = ARGV[i] end
  if take_pool_slot(pool_keys, pool_args)[1] == 0 then return 3 end
end
return 0
"""
)


class AdmitScript:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(SUBMIT_SCRIPT)  # no Redis call yet

    async def take(
        self,
        *,
        user_id: str,
        run_id: str,
        limit: int,
        pool_slot: bool,
        max_run_s: float,
        share: float,
    ) -> Outcome:
        """Take the slots of `run_id` in one atomic pass, or say what refused them;
        raises RedisError (or OSError, TimeoutError) when Redis is down. A run
        refused a pool slot (POOL_FULL) waits in its tenant's queue."""
        pool_args = admit_args(
            POOL, run_id=run_id, user_id=user_id, share=share, max_run_s=max_run_s, wait=True
        )
        outcome = await self._script(
            keys=[keys.KILL_SWITCH, keys.user_active_runs(user_id), *admit_keys(POOL)],
            args=[run_id, limit, "1" if pool_slot else "0", *pool_args],
        )
        return Outcome(int(outcome))
