"""Regression: a cancel recorded while Redis was down never reached the runner.

The runner learnt of a cancel only from the Redis flag, which state raises
after committing the cancel, best effort. With Redis down at that moment the
cancel was answered 202, recorded in Postgres, and ignored: the run finished.
Every checkpoint's answer now says whether a cancel is recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from relay_core.state_api import CheckpointIn, CreateRunIn
from relay_core.state_client import StateClient


def _cp(step: int) -> CheckpointIn:
    return CheckpointIn(attempt=1, step=step, kind="model_turn", payload={"content": []})


async def test_the_checkpoint_answer_carries_the_cancel(
    client: StateClient, new_run: Callable[..., CreateRunIn]
) -> None:
    run, _ = await client.create_run(new_run())
    await client.claim_run(run.run_id, consumer="runner-a")
    assert (await client.checkpoint(run.run_id, _cp(0))).cancel_requested is False
    cancelled = await client.cancel_run(run.run_id, user_id=run.user_id)
    assert cancelled.status == "running" and cancelled.cancel_requested
    answer = await client.checkpoint(run.run_id, _cp(1))
    assert answer.cancel_requested is True and answer.step == 1
