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

import time
from enum import IntEnum

from redis.asyncio import Redis

from relay_core import keys
from relay_core.capacity import ADMIT_SCRIPT
from relay_gateway.active_runs import TAKE_SCRIPT
from relay_gateway.capacity import POOL


class Outcome(IntEnum):
    ADMITTED = 0  # every slot asked for is taken
    KILLED = 1  # the kill switch is on: nothing taken
    USER_FULL = 2  # the user is at the limit: nothing taken
    POOL_FULL = 3  # no free interactive slot: the user's slot IS taken


def _function(name: str, script: str) -> str:
    return f"local function {name}(KEYS, ARGV)\n{script}\nend\n"


# KEYS: kill switch, user's active runs, pool capacity, pool admitted.
# ARGV: run_id, user limit, "1" to take a pool slot, now (ms), admission expiry (ms).
SUBMIT_SCRIPT = (
    _function("take_user_slot", TAKE_SCRIPT)
    + _function("take_pool_slot", ADMIT_SCRIPT)
    + """
if redis.call('GET', KEYS[1]) == '1' then return 1 end
if take_user_slot({KEYS[2]}, {ARGV[1], ARGV[2]})[1] == 0 then return 2 end
if ARGV[3] == '1' and take_pool_slot({KEYS[3], KEYS[4]}, {ARGV[4], ARGV[1], ARGV[5]})[1] == 0 then
  return 3
end
return 0
"""
)


class AdmitScript:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(SUBMIT_SCRIPT)  # no Redis call yet

    async def take(
        self, *, user_id: str, run_id: str, limit: int, pool_slot: bool, max_run_s: float
    ) -> Outcome:
        """Take the slots of `run_id` in one atomic pass, or say what refused them;
        raises RedisError (or OSError, TimeoutError) when Redis is down."""
        now_ms = int(time.time() * 1000)
        outcome = await self._script(
            keys=[
                keys.KILL_SWITCH,
                keys.user_active_runs(user_id),
                keys.pool_capacity(POOL),
                keys.pool_admitted(POOL),
            ],
            args=[run_id, limit, "1" if pool_slot else "0", now_ms, now_ms + int(max_run_s * 1000)],
        )
        return Outcome(int(outcome))
