"""One queue entry, start to finish: claim, drive the agent loop, finish, ack.

Decisions:
- The order of the end is the contract: the transcript and the terminal
  status are persisted through state (`finish`) BEFORE the `done` event is
  written, so a client that sees `done` can read the transcript; the queue
  entry is acked last, so a crash anywhere before leaves it to be redelivered.
- Every attempt after the first announces itself with `resumed`, checkpoints
  or not: an attempt that died mid-turn left text on the stream that the
  client must discard (it is re-sent from `from_step`).
- The claim carries this runner's lease TTL: state sets the first lease with
  it, so a runner that dies before its first heartbeat is taken over after
  its own TTL, not state's default.
- A redelivered entry whose run is already terminal is acked and dropped; if
  its event stream lacks the `done` event (the runner died between finish and
  done), the event is written then, so no client waits forever.
- Another attempt owning the run (state answers `stale_attempt`, the lease
  was lost, or the fence dropped an event) stops this execution silently:
  no finish, no `done`, no ack; the owner does all three.
- A cancel is seen through the Redis flag (fast: the process reads every
  run's flag and the kill switch in one poll every `cancel_check_s`,
  `stopflags`) and through state's answer to every checkpoint (durable: the
  flag is lost if Redis was down when the cancel was recorded).
- State or Redis down in the middle of a run: calls are retried with backoff
  while the lease lives; the heartbeat thread keeps the lease meanwhile.
- Anything unexpected ends the run `failed` with an `internal` error event;
  it never reaches the worker loop.
- Tracing (relay_core.tracing): the whole execution is one `run` span under
  the run's trace context (the queue entry's `traceparent`, a copy of the
  run's row), so every attempt of a run, on any runner, is in the trace its
  submit began; the claim, each checkpoint and the `resumed` announcement
  are its children, the agent loop adds `chat` and `execute_tool` spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

from redis.exceptions import RedisError

from relay_agent import Agent, AgentInputs, AgentResult, resume_step
from relay_agent.tools import ToolContext, ToolError
from relay_core import events, keys, run_protocol, tracing
from relay_core.events import Event, StopReason, parse_stream_id
from relay_core.logs import run_id_var
from relay_core.models import UnknownModel
from relay_core.redis import stream_entries
from relay_core.state_api import CheckpointIn, ClaimOut, FinishIn, NewMessage
from relay_core.state_client import Conflict, NotFound, StateError, StateUnavailable
from relay_runner import metrics
from relay_runner.eventlog import EventsLost, EventWriter
from relay_runner.retry import Backoff
from relay_runner.runtime import Runtime
from relay_runner.spend import DEFAULT_DAILY_LIMIT_USD, DEFAULT_RUN_LIMIT_USD, RunSpend
from relay_runner.streams import Entry

__all__ = ["Execution", "Superseded"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Superseded(Exception):
    """Another attempt owns the run now; this execution stops without a trace."""


def conflict_type(exc: Conflict) -> str:
    err = exc.body.get("error") if isinstance(exc.body, dict) else None
    return str(err.get("type", "conflict")) if isinstance(err, dict) else "conflict"


class Execution:
    def __init__(self, rt: Runtime, entry: Entry) -> None:
        self.rt = rt
        self.entry = entry
        self.run_id = entry.run_id or ""
        self.claim: ClaimOut | None = None
        self.lease_value: str | None = None
        self.writer: EventWriter | None = None
        self.agent: Agent | None = None
        self._stop_reason: StopReason | None = None
        self.span: tracing.Span | None = None  # the `run` span (None: tracing off)
        self.duplicates: list[str] = []  # other entries of this run, acked with ours
        # When the run's entry was queued, until its first token (first attempts):
        # `relay_runner_first_token_seconds`.
        self._queued_at: float | None = None

    @property
    def entry_ids(self) -> list[str]:
        return [self.entry.id, *self.duplicates]

    def adopt(self, entry_id: str) -> None:
        """Another queue entry of this run (a reconciler re-enqueue): it is acked
        when this execution acks its own, and left pending if this one is
        superseded, so the run is never left without an entry."""
        if entry_id not in self.entry_ids:
            self.duplicates.append(entry_id)

    async def _ack(self) -> None:
        ids = self.entry_ids
        stream = self.entry.stream or keys.run_queue(self.rt.pool, self.run_id)
        await self._redis(lambda: self.rt.queue.ack(stream, *ids))

    async def handle(self) -> None:
        """Process the entry, in the run's trace; only a cancellation (shutdown) escapes."""
        token = run_id_var.set(self.run_id or None)
        try:
            with tracing.span(
                "run",
                parent=tracing.parent_from(self.entry.traceparent),
                attributes=self._span_attributes(),
            ) as span:
                self.span = span
                await self._guarded()
        finally:
            run_id_var.reset(token)

    def _span_attributes(self) -> dict[str, Any]:
        if not tracing.ENABLED:
            return {}
        return {
            "openinference.span.kind": "AGENT",
            "relay.run_id": self.run_id,
            "relay.pool": self.rt.pool,
            "relay.runner": self.rt.settings.consumer_name,
            "relay.queue.entry_id": self.entry.id,
            "relay.queue.deliveries": self.entry.deliveries,
        }

    async def _guarded(self) -> None:
        try:
            await self._handle()
        except asyncio.CancelledError:
            if self.rt.releasing:
                await self._hand_back()
            raise
        except Superseded as exc:
            log.info("run superseded: %s", exc)
            metrics.RUNS_RELEASED.labels(self.rt.pool, "superseded").inc()
        except Exception:
            log.exception("run failed unexpectedly")
            await self._fail_internal()
        finally:
            if self.run_id:
                self.rt.keeper.drop(self.run_id)
                self.rt.stops.forget(self.run_id)

    async def _handle(self) -> None:
        if not self.run_id:
            log.error("queue entry without run_id; dropped", extra={"entry": self.entry.id})
            await self._ack()
            return
        claim = await self._claim()
        if claim is None:
            return
        self.claim = claim
        self._observe_claim(claim)
        if self.span is not None:
            self.span.set_attribute("relay.attempt", claim.attempt)
        self.lease_value = run_protocol.lease_value(self.rt.settings.consumer_name, claim.attempt)
        self.rt.keeper.hold(self.run_id, self.lease_value, self.entry.id)
        self.writer = EventWriter(
            self.rt.publisher,
            run_id=self.run_id,
            lease_value=self.lease_value,
            maxlen=self.rt.settings.events_maxlen,
        )
        if self.entry.deliveries > self.rt.settings.max_deliveries:
            await self._dead_letter()
            return
        await self._emit(events.start(self.run_id, claim.attempt))
        if claim.attempt > 1:
            await self._resumed(claim)
        await self._finish(await self._execute())

    def _observe_claim(self, claim: ClaimOut) -> None:
        """The queue wait; an entry delivered again (its runner died) is older
        than its wait, so it is not counted."""
        if self.entry.deliveries != 1:
            return
        try:
            queued_at = parse_stream_id(self.entry.id)[0] / 1000
        except ValueError:
            return
        metrics.QUEUE_WAIT.labels(self.rt.pool).observe(max(0.0, time.time() - queued_at))
        if claim.attempt == 1:
            self._queued_at = queued_at

    async def _resumed(self, claim: ClaimOut) -> None:
        """Another attempt ran before this one (a crash, a drain, a lost lease):
        announce it, in a span linked to the previous attempt's claim."""
        step = resume_step(claim.checkpoints)
        with tracing.span(
            "resumed",
            attributes={
                "relay.attempt": claim.attempt,
                "relay.previous_attempt": claim.attempt - 1,
                "relay.resume_step": step,
                "relay.checkpoints": len(claim.checkpoints),
            },
            links=tracing.link_to(claim.previous_traceparent),
        ):
            await self._emit(events.resumed(claim.attempt, step))

    # claiming

    async def _claim(self) -> ClaimOut | None:
        backoff = Backoff()
        consumer = self.rt.settings.consumer_name
        while True:
            try:
                return await self.rt.state.claim_run(
                    self.run_id, consumer=consumer, lease_ttl_s=self.rt.settings.lease_ttl_s
                )
            except Conflict as exc:
                reason = conflict_type(exc)
                metrics.CLAIM_CONFLICTS.labels(self.rt.pool, reason).inc()
                if reason == "leased":
                    log.info("run is leased by a live runner; entry left pending")
                    return None
                await self._drop_terminal()
                return None
            except NotFound:
                log.warning("queue entry names an unknown run; dropped")
                await self._ack()
                return None
            except StateUnavailable as exc:
                metrics.DEPENDENCY_ERRORS.labels("state").inc()
                log.warning("claim failed, state unavailable: %s", exc)
                await backoff.wait()
            except StateError as exc:
                log.error("claim refused (HTTP %s): %s; entry left pending", exc.status, exc)
                return None

    async def _drop_terminal(self) -> None:
        """The run is finished: ack the entry, and write `done` if a crash skipped it."""
        await self._ack()
        try:
            run = await self.rt.state.get_run(self.run_id)
            last = stream_entries(await self.rt.redis.xrevrange(keys.events(self.run_id), count=1))
            if not last or events.decode_entry(*last[0]).type != "done":
                await self._write_done(run.status, run.cost_usd, user_id=run.user_id)
        except (StateError, RedisError) as exc:
            log.warning("could not check the terminal event: %s", type(exc).__name__)

    # the run

    async def _execute(self) -> AgentResult:
        assert self.claim is not None
        run = self.claim.run
        if run.cancel_requested:
            return AgentResult(status="cancelled")
        try:
            chain = self.rt.catalog.chain(run.model)
        except UnknownModel:
            error = events.run_error(
                "invalid_request", f"unknown model {run.model!r}", "model_unavailable"
            )
            await self._emit(events.Event("error", error))
            return AgentResult(status="failed", error=error)
        self.agent = Agent(self._inputs(chain))
        # The agent holds the conversation now; the claim's copy would stay
        # in memory for as long as the run does, once per run in flight.
        self.claim.history = []
        async with aclosing(self.agent.run()) as stream:
            async for event in stream:
                await self._emit(event)
                self._observe(event)
        if self.agent.result.stop_reason == "lease_lost":
            raise Superseded("the lease was lost")
        return self.agent.result

    def _inputs(self, chain: list[Any]) -> AgentInputs:
        assert self.claim is not None
        settings = self.rt.settings
        run = self.claim.run
        return AgentInputs(
            chain=chain,
            providers=self.rt.providers,
            history=[{"role": m.role, "content": m.content} for m in self.claim.history],
            registry=self.rt.registry,
            checkpoint=self._checkpoint,
            should_stop=self._should_stop,
            tool_context=ToolContext(run_id=self.run_id, user_id=run.user_id, search=self._search),
            system=settings.system_prompt,
            step_budget=settings.step_budget,
            restored=self.claim.checkpoints,
            max_cost_usd=run.max_cost_usd,
            gate=self.rt.gate,
            observer=self.rt.call_metrics,
            spend=RunSpend(
                self.rt.budget,
                run_id=self.run_id,
                user_id=run.user_id,
                run_limit_usd=run.max_cost_usd or DEFAULT_RUN_LIMIT_USD,
                daily_limit_usd=run.daily_limit_usd or DEFAULT_DAILY_LIMIT_USD,
            ),
        )

    def _observe(self, event: Event) -> None:
        pool = self.rt.pool
        if event.type == "usage":
            metrics.STEPS.labels(pool).inc()
            metrics.MODEL_TOKENS.labels(pool, "input").inc(event.data["input_tokens"])
            metrics.MODEL_TOKENS.labels(pool, "output").inc(event.data["output_tokens"])
        elif event.type == "tool_end":
            ok = "true" if event.data["ok"] else "false"
            metrics.TOOL_CALLS.labels(pool, event.data["name"], ok).inc()
        elif event.type == "step_retry":
            metrics.STEP_RETRIES.labels(pool).inc()

    async def _checkpoint(self, step: int, kind: str, call_index: int, payload: dict[str, Any]):
        assert self.claim is not None
        cp = CheckpointIn(
            attempt=self.claim.attempt, step=step, kind=kind, call_index=call_index, payload=payload
        )
        attributes = {"relay.step": step, "relay.checkpoint.kind": kind} if tracing.ENABLED else {}
        with tracing.span(f"checkpoint {kind}", attributes=attributes):
            stored = await self._state(lambda: self.rt.state.checkpoint(self.run_id, cp))
        if stored.cancel_requested:
            self._stop_reason = "cancelled"  # honoured even if the Redis flag was lost

    async def _should_stop(self) -> StopReason | None:
        if self.rt.keeper.lost(self.run_id) or (self.writer is not None and self.writer.fenced):
            return "lease_lost"
        seen = await self.rt.stops.check(self.run_id)  # memory, but for the first check
        if seen == "cancelled" or (seen is not None and self._stop_reason is None):
            self._stop_reason = seen
        return self._stop_reason

    async def _search(self, query: str, limit: int) -> list[dict[str, Any]]:
        assert self.claim is not None
        try:
            found = await self.rt.state.search_documents(
                user_id=self.claim.run.user_id, query=query, limit=limit
            )
        except StateError as exc:
            raise ToolError(f"document search is unavailable right now ({exc})") from exc
        return [hit.model_dump() for hit in found.results]

    # endings

    async def _finish(self, result: AgentResult) -> None:
        assert self.claim is not None
        if result.status == "running":
            raise RuntimeError("the agent loop ended without a final status")
        fin = FinishIn(
            attempt=self.claim.attempt,
            status=result.status,
            error=result.error,
            cost_usd=result.cost_usd,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            messages=[
                NewMessage(
                    role=m.role,
                    content=m.content,
                    token_count=m.token_count,
                    cost_usd=m.cost_usd,
                )
                for m in result.messages
            ],
        )
        await self._state(lambda: self.rt.state.finish_run(self.run_id, fin))
        if self.span is not None:
            self.span.set_attributes(
                {
                    "relay.status": result.status,
                    "relay.cost_usd": result.cost_usd,
                    "relay.usage.input_tokens": result.input_tokens,
                    "relay.usage.output_tokens": result.output_tokens,
                }
            )
        metrics.RUNS_FINISHED.labels(self.rt.pool, result.status).inc()
        await self._write_done(result.status, result.cost_usd)
        await self._ack()
        log.info("run finished", extra={"status": result.status, "cost_usd": result.cost_usd})

    async def _dead_letter(self) -> None:
        assert self.claim is not None
        deliveries = self.entry.deliveries
        message = f"the run was delivered {deliveries} times without finishing; giving up"
        error = events.run_error("internal", message, "max_deliveries")
        await self._emit(events.Event("error", error))
        cost = sum(
            float(cp.payload.get("cost_usd", 0.0))
            for cp in self.claim.checkpoints
            if cp.kind == "model_turn"
        )
        fin = FinishIn(attempt=self.claim.attempt, status="failed", error=error, cost_usd=cost)
        await self._state(lambda: self.rt.state.finish_run(self.run_id, fin))
        await self._redis(
            lambda: self.rt.queue.dead_letter(
                self.entry, pool=self.rt.pool, reason="max_deliveries"
            )
        )
        await self._write_done("failed", cost)
        await self._ack()
        metrics.DEAD_LETTERED.labels(self.rt.pool).inc()
        metrics.RUNS_FINISHED.labels(self.rt.pool, "failed").inc()
        log.warning("run dead-lettered", extra={"deliveries": deliveries})

    async def _fail_internal(self) -> None:
        if self.claim is None or self.writer is None or self.writer.fenced:
            return  # nothing claimed: the entry stays pending and is delivered again
        error = events.run_error(
            "internal", "the run failed on an internal error; it has been logged", "internal"
        )
        partial = self.agent.result if self.agent is not None else AgentResult()
        result = AgentResult(
            status="failed",
            error=error,
            cost_usd=partial.cost_usd,
            input_tokens=partial.input_tokens,
            output_tokens=partial.output_tokens,
        )
        try:
            await self._emit(events.Event("error", error))
            await self._finish(result)
        except Exception:
            log.exception("could not record the failure; the entry will be delivered again")

    async def _hand_back(self, *, note: bool = True) -> None:
        """Give the run to another runner now, from its last checkpoint (shutdown,
        or a stream this attempt can no longer vouch for)."""
        try:
            if note and self.writer is not None and not self.writer.fenced:
                with contextlib.suppress(EventsLost):
                    await self.writer.write(events.status("runner shutting down; the run moves on"))
            await self.rt.queue.hand_back(
                self.entry, lease_value=self.lease_value, duplicates=self.duplicates
            )
            metrics.RUNS_RELEASED.labels(self.rt.pool, "shutdown").inc()
            log.info("run handed back to the queue")
        except Exception:
            log.exception("could not hand the run back; it resumes once its lease expires")

    # plumbing

    async def _write_done(self, status: str, cost_usd: float, *, user_id: str = "") -> None:
        """`done`, after the events a failover lost are put back (`eventlog`)."""
        settings = self.rt.settings
        user_id = user_id or (self.claim.run.user_id if self.claim is not None else "")

        def done(after_id: str | None) -> Awaitable[str | run_protocol.StreamTail]:
            return run_protocol.write_done(
                redis=self.rt.redis,
                run_id=self.run_id,
                user_id=user_id,
                pool=self.rt.pool,
                status=status,
                cost_usd=cost_usd,
                retention_s=settings.events_retention_s,
                maxlen=settings.events_maxlen,
                after_id=after_id,
                calls=self.rt.calls,
            )

        writer = self.writer
        if writer is None:
            await self._redis(lambda: done(None))
            return
        try:
            await self._redis(lambda: writer.write_done(done))
        except EventsLost as exc:  # the run is over: its end must be written regardless
            log.error("the run's stream lost events before its end: %s", exc)
            await self._redis(lambda: done(None))

    async def _emit(self, event: Event) -> None:
        assert self.writer is not None
        writer = self.writer
        try:
            entry_id = await self._redis(lambda: writer.write(event))
        except EventsLost as exc:
            log.warning("handing the run back: %s", exc)
            await self._hand_back(note=False)
            raise Superseded(f"the run's stream lost events: {exc}") from exc
        if entry_id is None:
            metrics.EVENTS_FENCED.labels(self.rt.pool).inc()
            raise Superseded("the lease changed; the fence dropped an event")
        if self._queued_at is not None and event.type == "token":
            waited = max(0.0, time.time() - self._queued_at)
            metrics.FIRST_TOKEN.labels(self.rt.pool).observe(waited)
            self._queued_at = None

    async def _redis(self, call: Callable[[], Awaitable[T]]) -> T:
        """Retry a Redis call for up to one lease TTL; past that, another runner owns the run."""
        deadline = time.monotonic() + self.rt.settings.lease_ttl_s
        backoff: Backoff | None = None  # made on a failure: this runs once per event
        while True:
            try:
                return await call()
            except RedisError as exc:
                metrics.DEPENDENCY_ERRORS.labels("redis").inc()
                if time.monotonic() > deadline:
                    raise Superseded(f"Redis unreachable for a whole lease: {exc}") from exc
                log.warning("redis call failed, retrying: %s", type(exc).__name__)
                backoff = backoff or Backoff(base_s=0.05, cap_s=2.0)
                await backoff.wait()

    async def _state(self, call: Callable[[], Awaitable[T]]) -> T:
        """Retry while state is down and our lease lives; a conflict means superseded."""
        backoff = Backoff()
        while True:
            try:
                return await call()
            except Conflict as exc:
                raise Superseded(f"state refused the write: {conflict_type(exc)}") from exc
            except StateUnavailable as exc:
                metrics.DEPENDENCY_ERRORS.labels("state").inc()
                if self.rt.keeper.lost(self.run_id):
                    raise Superseded("the lease was lost while state was down") from exc
                log.warning("state call failed, retrying: %s", exc)
                await backoff.wait()
