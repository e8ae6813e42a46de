"""Admission of a new run: the kill switch, and the slots it takes before it exists.

Order, and why:

1. The kill switch: when it is on, nothing is taken and the answer is 503
   with reason `kill_switch`.
2. The user's concurrent runs (`active_runs`): a cheap, immediate answer
   (429 with `Retry-After`) for a user already at the limit, after one leak
   repair.
3. For an interactive run, a slot of the interactive pool, within the
   tenant's share of it (its key's `interactive_share`, else
   `interactive_tenant_share`) and in turn with the other waiting tenants
   (relay_core.capacity): when there is none for it, the user's slot is kept
   and the run waits in its tenant's queue (`capacity`) for up to
   `interactive_queue_timeout_s`, then 429. A background run takes no slot:
   it queues, and the background pool scales on queue lag.
4. The caller then creates the run in state under the same run id. One
   active run per conversation is decided there, atomically with the insert
   (409 `conversation_busy`, or the run deferred), since only state can
   check it under the conversation's row lock.

An idempotent retry is not refused for lack of room (`find_replay`): when
step 2 or 3 would refuse a submission that carries an `Idempotency-Key`, state
is asked for the run an earlier attempt under that key created, and if there
is one the admission holds nothing and carries that run (`Admission.replay`),
which the caller answers as the replay it is; the 429 is only for a
submission that would start a new run. The point of the key is that the
client does not know whether its first attempt landed, and that attempt is
what filled the limit. The lookup costs a state call only on the refusal
path (a full pool is asked before the wait, so a replay does not wait for a
slot it does not need); the happy path is unchanged. The kill switch (step
1) still answers 503 first: it pauses the API for new runs and a retry alike.

Steps 1 to 3 are one round trip in the usual case (two for an interactive run:
`admit_script` says why not one script on a Redis Cluster). Every
slot is taken under the run id the gateway minted, so the process that ends
the run releases it by id (`relay_core.run_protocol`): the runner when it
writes `done`, state when it cancels a queued run. `Admission.release` gives
the slots back when the run was not created (state refused it or could not
be reached), and `confirm` does when state answered with another, earlier
run (an idempotent replay: that run holds its own slots). A release that
fails is logged, not raised: the user's set repairs itself (`active_runs`)
and a pool admission lapses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from relay_core import run_protocol
from relay_core.errors import ApiError
from relay_core.state_api import Principal, RunKind, RunOut
from relay_gateway.admit_script import Outcome
from relay_gateway.capacity import POOL
from relay_gateway.killswitch import REDIS_ERRORS, redis_unavailable
from relay_gateway.runtime import Runtime

log = logging.getLogger(__name__)

# Runs take seconds to minutes: asking again sooner mostly earns another 429.
CONCURRENT_RETRY_AFTER_S = 5

# The run an earlier attempt under the submission's Idempotency-Key created
# (None: there is none); raises `ApiError` 409 when the key was used for a
# different request.
FindReplay = Callable[[], Awaitable[RunOut | None]]


@dataclass
class Admission:
    runtime: Runtime
    user_id: str
    run_id: str
    kind: RunKind
    pool_slot: bool = False
    # The tenant's share of the interactive pool (relay_core.capacity).
    share: float = 0.5
    # Refused for lack of room, but a retry of this earlier run: nothing is held.
    replay: RunOut | None = None

    async def release(self) -> None:
        """Give back every slot taken for `run_id` (the run was not created)."""
        try:
            await run_protocol.release_slots(
                redis=self.runtime.redis,
                run_id=self.run_id,
                user_id=self.user_id,
                pool=POOL if self.pool_slot else None,
            )
        except REDIS_ERRORS as exc:
            log.warning(
                "could not release the slots of a run not created (%s); they lapse",
                type(exc).__name__,
                extra={"run_id": self.run_id},
            )

    async def confirm(self, run: RunOut) -> None:
        """State answered `run`: the slots stay with it when it is the run they were
        taken for; when it is another (an idempotent replay), they go back."""
        if run.run_id != self.run_id:
            await self.release()


async def _pass(runtime: Runtime, admission: Admission, limit: int) -> Outcome:
    return await runtime.admit_script.take(
        user_id=admission.user_id,
        run_id=admission.run_id,
        limit=limit,
        pool_slot=admission.kind == "interactive",
        max_run_s=runtime.settings.interactive_admission_ttl_s,
        share=admission.share,
    )


async def _enter(runtime: Runtime, admission: Admission, limit: int) -> Outcome:
    """The admission script, and for a user who looks full a leak repair and a second pass."""
    try:
        outcome = await _pass(runtime, admission, limit)
        if outcome == Outcome.USER_FULL and await runtime.active_runs.repair(admission.user_id):
            outcome = await _pass(runtime, admission, limit)
    except REDIS_ERRORS as exc:
        raise redis_unavailable("cannot check the kill switch and admit the run") from exc
    return outcome


async def admit(
    *,
    runtime: Runtime,
    principal: Principal,
    run_id: str,
    kind: RunKind,
    find_replay: FindReplay | None = None,
) -> Admission:
    """Take the slots of a new run, or raise an `ApiError` (503 kill switch, 429, or
    503 when Redis is down). With `find_replay` (the submission has an
    Idempotency-Key), a refusal for lack of room first asks it for the run to
    replay, and returns an admission holding nothing with that `replay`."""
    share = principal.interactive_share or runtime.settings.interactive_tenant_share
    admission = Admission(
        runtime=runtime, user_id=principal.user_id, run_id=run_id, kind=kind, share=share
    )
    limit = principal.max_concurrent_runs or runtime.settings.max_concurrent_runs
    started = time.perf_counter()
    outcome = await _enter(runtime, admission, limit)
    if outcome == Outcome.KILLED:
        runtime.kill_switch.observe(True)
        raise ApiError(503, "new runs are paused by the kill switch", reason="kill_switch")
    if outcome == Outcome.USER_FULL:
        if find_replay is not None and (replay := await find_replay()) is not None:
            admission.replay = replay
            return admission
        runtime.metrics.admissions_refused.labels("concurrent_runs").inc()
        raise ApiError(
            429,
            f"you already have {limit} runs in flight, the limit of this API key; "
            "wait for one to finish",
            reason="concurrent_runs",
            headers={"Retry-After": str(CONCURRENT_RETRY_AFTER_S)},
        )
    if kind == "interactive":
        if outcome == Outcome.POOL_FULL:  # the user's slot is held meanwhile
            await _wait_for_pool(runtime, admission, find_replay)
            if admission.replay is not None:
                return admission
        else:
            runtime.metrics.admission_wait.observe(time.perf_counter() - started)
        admission.pool_slot = True
    return admission


async def _wait_for_pool(
    runtime: Runtime, admission: Admission, find_replay: FindReplay | None
) -> None:
    """A pool slot within the wait (or 429), unless the submission is a replay:
    then the run leaves the queue, the user's slot goes back and
    `admission.replay` is set."""
    try:
        if find_replay is not None:
            admission.replay = await find_replay()
        if admission.replay is None:
            await runtime.interactive.admit(
                admission.run_id, user_id=admission.user_id, share=admission.share
            )
            return
    except BaseException:
        await runtime.interactive.leave(admission.run_id, user_id=admission.user_id)
        await admission.release()
        raise
    await runtime.interactive.leave(admission.run_id, user_id=admission.user_id)
    await admission.release()
