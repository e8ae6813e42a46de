"""relay-client against a real stack: a stream yields every token exactly once
whatever happens to the connection, and ends with the run's whole text.

- The events service is killed (`kill -9`) and restarted twice in the middle
  of a 200-token stream: every token once, in order, the same ids as a
  replay of the finished run, and the text equals the stored transcript.
- A provider fault mid-turn (modelsim's `fail` after 8 tokens, once) makes
  the step run again: the SDK drops the partial text (`step_retry`).
- A client that comes back after the run's events expired gets `resync`;
  the stream still ends with the run's full text, from the transcript.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator

from relay_client import AsyncRelayClient, AsyncRunStream, RelayClient, RetryPolicy
from relay_client.events import (
    DoneEvent,
    Event,
    Reconnected,
    ResyncEvent,
    StepRetryEvent,
    TokenEvent,
    TranscriptText,
)
from relay_client.text import stream_id
from relay_devstack.harness import async_wait_for
from relay_devstack.stack import Stack
from tests.clients.kit import RETENTION_S, record_figures, sim

FAST_RETRY = RetryPolicy(base_s=0.05, cap_s=0.5, give_up_after_s=60)
KILL_AT = (50, 130)


def restart_events_later(stack: Stack, restarts: list[float]) -> threading.Thread:
    """Start the killed events service again, in the background (the stream
    meets refused connections meanwhile)."""

    def start() -> None:
        started = time.monotonic()
        stack.start_service("events")
        restarts.append(time.monotonic() - started)

    thread = threading.Thread(target=start, name="restart-events")
    thread.start()
    return thread


def test_two_kill9_of_the_events_service_lose_and_repeat_nothing(
    clients_stack: Stack, user_key: str
) -> None:
    stack = clients_stack
    tokens: list[TokenEvent] = []
    reconnects: list[Reconnected] = []
    restarts: list[float] = []
    threads: list[threading.Thread] = []
    with RelayClient(stack.gateway_url, user_key, retry=FAST_RETRY) as relay:
        run = relay.submit(sim("count to 200", tokens=200, token_delay_ms=20))
        stream = relay.stream(run)
        for event in stream:
            if isinstance(event, TokenEvent):
                tokens.append(event)
                if len(tokens) in KILL_AT:
                    stack.kill("events")  # SIGKILL, waits until the process is gone
                    threads.append(restart_events_later(stack, restarts))
            elif isinstance(event, Reconnected):
                reconnects.append(event)
        for thread in threads:
            thread.join(timeout=60)
        replay = [e for e in relay.stream(run) if isinstance(e, TokenEvent)]
        transcript = relay.transcript(run.conversation_id).run_text(run.run_id)

    assert stream.status == "succeeded"
    assert len(reconnects) == 2, reconnects
    ids = [t.id for t in tokens]
    assert len(tokens) == 200 and len(set(ids)) == len(ids), "a token lost or repeated"
    assert ids == sorted(ids, key=lambda i: stream_id(i or "") or (0, 0)), "out of order"
    assert ids == [t.id for t in replay], "what the client got differs from the event log"
    assert stream.text == "".join(t.text for t in tokens) == transcript
    assert transcript.split() and len(transcript.split()) == 200
    record_figures(
        "sdk kill -9 of events x2",
        tokens=len(tokens),
        reconnects=len(reconnects),
        failed_connects=sum(r.attempts for r in reconnects),
        resume_s=max(r.downtime_s for r in reconnects),
        restart_s=max(restarts),
    )


def test_a_step_retry_drops_the_partial_text(clients_stack: Stack, user_key: str) -> None:
    fault = {"after_tokens": 8}
    message = sim(
        "flaky", tokens=30, token_delay_ms=5, fail=fault, fail_times=1, tag=uuid.uuid4().hex
    )
    with RelayClient(clients_stack.gateway_url, user_key) as relay:
        run = relay.submit(message)
        stream = relay.stream(run)
        events = list(stream)
        transcript = relay.transcript(run.conversation_id).run_text(run.run_id)
    retries = [e for e in events if isinstance(e, StepRetryEvent)]
    assert len(retries) == 1 and stream.status == "succeeded"
    at = events.index(retries[0])
    partial = [e for e in events[:at] if isinstance(e, TokenEvent) and e.step == retries[0].step]
    assert len(partial) == 8  # what the failed attempt sent before the fault
    every_token = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert stream.text == transcript and len(transcript.split()) == 30
    assert every_token != transcript  # kept without step_retry: the partial text twice


async def test_a_resync_after_retention_ends_with_the_full_transcript(
    clients_stack: Stack, user_key: str
) -> None:
    async with AsyncRelayClient(clients_stack.gateway_url, user_key) as relay:
        chat = relay.chat(sim("remember me", tokens=40, token_delay_ms=5), detach=True)
        seen = [event async for event in _first(chat, 4)]
        await chat.aclose()  # detached: the run goes on without us
        assert chat.run_id and chat.last_event_id
        run_id, resume_from = chat.run_id, chat.last_event_id

        async def expired() -> bool:
            run = await relay.get_run(run_id)
            if not run.finished:
                return False
            first = await anext(aiter(relay.stream(run_id)))
            return isinstance(first, ResyncEvent)

        await async_wait_for(
            expired, timeout_s=RETENTION_S + 30, what="the run's events to expire", interval_s=0.2
        )
        stream = relay.stream(run_id, last_event_id=resume_from)
        events = [event async for event in stream]
        run = await relay.get_run(run_id)
        transcript = (await relay.transcript(run.conversation_id)).run_text(run_id)
    assert [type(e) for e in events] == [ResyncEvent, TranscriptText, DoneEvent]
    assert isinstance(events[0], ResyncEvent) and events[0].reason == "events_expired"
    assert stream.text == transcript and len(transcript.split()) == 40
    assert any(isinstance(e, TokenEvent) for e in seen)


async def _first(stream: AsyncRunStream, count: int) -> AsyncIterator[Event]:
    got = 0
    async for event in stream:
        yield event
        got += 1
        if got >= count:
            return
