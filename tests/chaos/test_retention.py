"""Event retention: a resume point older than what is kept gets `resync`, never a gap.

The runner keeps at most ~100 events per run (`RELAY_EVENTS_MAXLEN`) and
keeps a finished run's events for RETENTION_S (`RELAY_EVENTS_RETENTION_S`):

- a client that read the first events of a 400-token run and comes back
  after it ended, with its Last-Event-ID, gets `resync` (reason
  `events_trimmed`, the transcript's URL) and then every event still kept,
  to the end: exactly the tail a live reader saw;
- once the run's events expired, a replay or a resume gets `resync`
  (`events_expired`) and a `done` with the run's final status.
"""

from __future__ import annotations

import asyncio

import pytest

from relay_devstack.harness import async_wait_for
from tests.chaos.client import Client, Follower, events_client, read_events, sim
from tests.chaos.kit import ChaosStack, StartRunner, record_figures

# Run again on Redis 7 by `make test-redis7` (the stack's own Redis is not
# marked automatically): the events service sees trimmed events through XINFO
# STREAM's `max-deleted-entry-id` there, a field Redis 6.2 does not have.
pytestmark = pytest.mark.redis

RETENTION_S = 3
RUNNER_ENV = {"RELAY_EVENTS_RETENTION_S": str(RETENTION_S), "RELAY_EVENTS_MAXLEN": "100"}


async def test_trimmed_and_expired_events_resync(
    chaos_stack: ChaosStack, runners: StartRunner
) -> None:
    stack = chaos_stack.stack
    runners("a", **RUNNER_ENV)
    client = Client(stack.gateway_url, chaos_stack.new_key())
    events = events_client(client.key)
    try:
        run = await client.submit(sim("long", tokens=400, token_delay_ms=2))
        live = Follower(events, run["events_url"])
        following = asyncio.create_task(live.follow(timeout_s=60))
        early = await read_events(events, run["events_url"], stop_after=3)
        seen = await asyncio.wait_for(following, timeout=60)

        resumed = await read_events(events, run["events_url"], last_event_id=early[-1].id)
        transcript_url = f"/v1/conversations/{run['conversation_id']}/messages"
        assert resumed[0].event == "resync"
        assert resumed[0].data == {"reason": "events_trimmed", "transcript_url": transcript_url}
        kept = resumed[1:]
        assert kept and kept[-1].event == "done"
        assert [e.id for e in kept] == [e.id for e in seen[-len(kept) :]]  # a whole tail
        assert len(kept) < len(seen) - 3

        async def expired() -> bool:
            replay = await read_events(events, run["events_url"])
            return replay[0].event == "resync"

        await async_wait_for(expired, timeout_s=RETENTION_S + 10, what="the events to expire")
        replay = await read_events(events, run["events_url"])
        again = await read_events(events, run["events_url"], last_event_id=seen[-2].id)
        record_figures(
            "event retention",
            events_written=len(seen),
            kept_after_trim=len(kept),
            retention_s=RETENTION_S,
        )
        for got in (replay, again):
            assert [e.event for e in got] == ["resync", "done"]
            assert got[0].data == {"reason": "events_expired", "transcript_url": transcript_url}
            assert got[1].data["status"] == "succeeded"
    finally:
        await events.aclose()
        await client.aclose()
