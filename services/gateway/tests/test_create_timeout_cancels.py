"""Regression: a submission whose `create_run` timed out could still run, for nobody.

The gateway mints the run id, takes the run's slots, then asks state to
create the run. When that call timed out, the client got 503 and the slots
went back, but state, slow rather than dead, went on and created the run
under that id a moment later: a queued run that executed (and cost money)
with no one waiting for it and outside the user's limits. The gateway now
cancels that run id in the background when `create_run` fails in flight.

State is made slow for real: the test holds a lock on the `runs` table in
Postgres, so state's insert waits; the gateway (0.5 s timeout) gives up
first; the lock is released before state's own 2 s statement timeout, so
the insert then succeeds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg

from relay_core import keys, state_api
from relay_core.config import DEV_INTERNAL_TOKEN
from relay_core.state_client import StateClient


async def test_a_run_created_after_its_submission_timed_out_is_cancelled(
    start_state: Any, make_gateway: Any, redis: Any, poll: Any
) -> None:
    state = start_state()
    client = StateClient(state.url, DEV_INTERNAL_TOKEN)
    try:
        user_id = f"u-{uuid.uuid4().hex[:10]}"
        key = await client.create_key(state_api.CreateKeyIn(user_id=user_id, name="test"))
        auth = {"Authorization": f"Bearer {key.api_key}"}
        async with make_gateway(state.url, dependency_timeout_s=0.5) as gateway:
            # Authenticated once, so the key is cached and only the insert waits.
            assert (await gateway.get("/v1/runs", headers=auth)).status_code == 200
            lock = await asyncpg.connect(state.database_url)
            try:
                async with lock.transaction():
                    await lock.execute("LOCK TABLE runs IN SHARE MODE")  # no insert passes
                    started = time.monotonic()
                    resp = await gateway.post("/v1/runs", json={"message": "hi"}, headers=auth)
                    assert time.monotonic() - started < 1.5
                    assert resp.status_code == 503, resp.text
                    assert resp.json()["error"]["reason"] == "state_unavailable"
                    # The insert is still waiting in state: releasing the lock lets it land.
                    await asyncio.sleep(0.1)
            finally:
                await lock.close()

            async def runs() -> list[state_api.RunOut]:
                return (await client.list_runs(user_id=user_id)).runs

            async def created_then_cancelled() -> bool:
                found = await runs()
                return len(found) == 1 and found[0].status == "cancelled"

            await poll(created_then_cancelled, timeout_s=15, what="the orphan run to be cancelled")
            run = (await runs())[0]
            assert run.cancel_requested and run.attempts == 0  # no runner ever started it
            assert await redis.scard(keys.user_active_runs(user_id)) == 0
            assert await redis.exists(keys.enqueued(run.run_id)) == 0
    finally:
        await client.aclose()
