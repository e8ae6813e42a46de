"""A submission's admission in Redis: the kill switch, the user's runs, a pool slot.

Why so few round trips: checking the kill switch, then taking the user's
concurrent-run slot, then an interactive pool slot were three round trips
for every submission (four with the rate limit); under a burst of chats the
gateway's Redis connections became the queue.

Why not one script: the three live under different hash tags (the kill
switch is a key of its own, the user's set is the user's, the pool's
capacity and admissions share the pool's tag), and a Redis Cluster refuses a
script over keys of several slots (`CROSSSLOT`). So:

1. ONE pipeline (one round trip on a plain Redis; one per node, in
   parallel, on a cluster; shared with the other submissions of the same
   moment, `relay_core.rediscalls`): `GET` the kill switch, and the user-slot script
   of `active_runs` (atomic check-and-add on the user's set). When the
   switch is on, the slot the same round trip took is given back at once
   and the answer is `KILLED`: the submission ends holding nothing, as
   before. A switch turned on after that read admits the run, exactly as if
   the submission had come a moment earlier; the runners read the switch
   before their first model call (`relay_runner.stopflags`), so such a run
   stops before it does anything.
2. For an interactive run, the pool admission script of
   `relay_core.capacity` on the pool's tag, only once the user's slot is
   held (a refused user never takes a pool slot another user is waiting
   for). Each rule is still written once, as its own script.

The slots taken are given back by `relay_core.run_protocol` (the run's
`done`, or `release_slots` for a run never created).

Named for what it is rather than "gate", which in Relay names one thing:
the agent loop's model gate (circuit breakers, `relay_runner.gate`).
"""

from __future__ import annotations

import asyncio
from enum import IntEnum

from redis.asyncio import Redis

from relay_core import keys, run_protocol
from relay_core.capacity import ADMIT_SCRIPT, admit_args, admit_keys
from relay_core.rediscalls import RedisCalls
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


class AdmitScript:
    def __init__(self, redis: Redis, calls: RedisCalls) -> None:
        self._redis = redis  # no Redis call yet
        self._calls = calls
        self._take = calls.register(TAKE_SCRIPT)
        self._admit = calls.register(ADMIT_SCRIPT)

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
        """Take the slots of `run_id`, or say what refused them; raises RedisError
        (or OSError, TimeoutError) when Redis is down. A run refused a pool slot
        (POOL_FULL) holds its user slot and waits in its tenant's queue."""
        switch, (taken, _) = await asyncio.gather(
            self._calls.command_soon("GET", keys.KILL_SWITCH),
            self._calls.script_soon(self._take, [keys.user_active_runs(user_id)], [run_id, limit]),
        )
        if switch == "1":
            if int(taken):
                await run_protocol.release_slots(redis=self._redis, run_id=run_id, user_id=user_id)
            return Outcome.KILLED
        if not int(taken):
            return Outcome.USER_FULL
        if not pool_slot:
            return Outcome.ADMITTED
        pool_keys = admit_keys(POOL)
        pool_args = admit_args(
            POOL, run_id=run_id, user_id=user_id, share=share, max_run_s=max_run_s, wait=True
        )
        admitted, _, _ = await self._calls.script(self._admit, pool_keys, pool_args)
        return Outcome.ADMITTED if int(admitted) else Outcome.POOL_FULL
