"""The agent loop: model turn, tool calls, checkpoint, repeat; as an async generator.

It knows nothing of Redis or HTTP. The caller (Relay's runner) gives it a
provider per provider name, the model chain (primary, then fallbacks), the
history, the tools, a checkpoint function and a stop function (and
optionally a model gate and a spend guard, `guards`), and consumes the
`relay_core.events` it yields: the same events clients read over SSE.

Decisions:
- `checkpoint(step, kind, call_index, payload)` is awaited before the next
  step starts (what is recorded when, and how a resume reads it back:
  `checkpoints`). If it raises (a stale attempt, say), the exception leaves
  the loop: nothing runs on unrecorded ground.
- A tool interrupted by a stop gets no `tool_result` checkpoint (the client
  and the transcript still see "interrupted"): when the stop is a lost lease,
  the attempt that takes over must run it again, or find it started and
  unknown, never restore "interrupted" as if it had finished.
- `should_stop()` is asked before every step, after every text delta, before
  every tool and while a tool runs; a stop closes the model stream at once
  (the provider's generator is closed, which closes its HTTP response).
- The transcript stays valid for the next turn of the conversation: every
  tool_use gets a tool_result, even when the run stops in the middle of a
  batch (the rest get "not executed" error results).
- A retryable provider error retries the step (`model_retries` times on the
  same model, then on each fallback), announced with a `step_retry` event so
  a client discards the partial text of the step. An optional `gate` skips
  models whose circuit is open and hears how each call went; client errors
  (not retryable) are not held against a model.
- Each model call and each tool call is a span (`telemetry`: GenAI semantic
  conventions), and an optional `observer` hears each model call's status
  class and cost (the runner's metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from relay_agent import telemetry
from relay_agent.checkpoints import (
    UNKNOWN_OUTCOME,
    CheckpointFn,
    CheckpointLike,
    Restored,
    dedupe_key,
    resume_step,
    tool_uses,
)
from relay_agent.guards import (
    CANCEL_REASONS,
    BudgetExceeded,
    CallObserver,
    ModelGate,
    SpendGuard,
    StopFn,
)
from relay_agent.providers.base import (
    Provider,
    ProviderError,
    TextDelta,
    ToolCall,
    TurnDone,
    call_outcome,
)
from relay_agent.tools.registry import ToolContext, ToolOutcome, ToolRegistry
from relay_core import events, tracing
from relay_core.events import Event
from relay_core.models import ModelSpec, cost_usd

__all__ = ["Agent", "AgentInputs", "AgentResult", "TranscriptMessage"]

log = logging.getLogger(__name__)

STOP_POLL_S = 0.1

Role = Literal["user", "assistant"]
Status = Literal["running", "succeeded", "failed", "cancelled"]


@dataclass
class TranscriptMessage:
    role: Role
    content: list[dict[str, Any]]
    token_count: int = 0
    cost_usd: float = 0.0


@dataclass
class AgentResult:
    status: Status = "running"
    error: dict[str, Any] | None = None
    stop_reason: str | None = None  # the should_stop reason that ended the run
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    steps: int = 0
    messages: list[TranscriptMessage] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class AgentInputs:
    chain: list[ModelSpec]
    providers: Mapping[str, Provider]
    history: list[dict[str, Any]]
    registry: ToolRegistry
    checkpoint: CheckpointFn
    should_stop: StopFn
    tool_context: ToolContext = field(default_factory=ToolContext)
    system: str | None = None
    step_budget: int = 20
    restored: Sequence[CheckpointLike] = ()
    max_cost_usd: float | None = None
    model_retries: int = 1
    retry_backoff_s: float = 0.25
    gate: ModelGate | None = None
    spend: SpendGuard | None = None
    observer: CallObserver | None = None


def _result_block(call_id: str, content: str, is_error: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, "content": content}
    if is_error:
        block["is_error"] = True
    return block


class Agent:
    """One run of the loop: iterate `run()`, then read `result`."""

    def __init__(self, inputs: AgentInputs) -> None:
        if not inputs.chain:
            raise ValueError("the model chain is empty")
        self.inputs = inputs
        self.result = AgentResult()
        self._restored = Restored(inputs.restored)
        self._messages = list(inputs.history)
        self._turn: TurnDone | None = None
        self._turn_spec: ModelSpec = inputs.chain[0]
        self._partial: list[str] = []
        self._retries = 0

    @property
    def resume_step(self) -> int:
        return resume_step(self.inputs.restored)

    async def run(self) -> AsyncGenerator[Event, None]:
        step = 0
        while self.result.status == "running":
            async for event in self._step(step):
                yield event
            step += 1
        err = self.result.error
        if err is not None:
            yield events.error(err["type"], err["message"], err.get("reason"))

    async def _step(self, step: int) -> AsyncIterator[Event]:
        """One step: a model turn (or its checkpoint) and its tools; ends the run or not."""
        if await self._check_limits(step):
            return
        turn = self._restored_turn(step)
        if turn is None:
            async for event in self._model_turn(step):
                yield event
            turn = self._turn
            if turn is None:  # stopped or failed mid-turn
                return
            cost = await self._record_turn(step, turn)
            yield events.usage(turn.input_tokens, turn.output_tokens, cost)
        self.result.steps = step + 1
        if not turn.tool_calls:
            self.result.status = "succeeded"
            return
        async for event in self._tools(step, turn.tool_calls):
            yield event

    async def _check_limits(self, step: int) -> bool:
        """Stop, step budget and cost ceiling; True when the run ends here."""
        if step in self._restored.turns:
            return False  # replaying what already happened is free
        reason = await self.inputs.should_stop()
        if reason is not None:
            self._stopped(reason)
            return True
        if step >= self.inputs.step_budget:
            self._budget_exhausted()
            return True
        limit = self.inputs.max_cost_usd
        if limit is not None and self.result.cost_usd >= limit:
            msg = f"run cost {self.result.cost_usd:.6f} USD reached its ceiling of {limit} USD"
            self._fail("cost_budget", msg, "cost_budget_exceeded")
            return True
        return False

    # model turns

    def _restored_turn(self, step: int) -> TurnDone | None:
        payload = self._restored.turns.get(step)
        if payload is None:
            return None
        blocks = list(payload.get("content", []))
        turn = TurnDone(
            content_blocks=blocks,
            tool_calls=tool_uses(blocks),
            stop_reason=str(payload.get("stop_reason", "end_turn")),
            input_tokens=int(payload.get("input_tokens", 0)),
            output_tokens=int(payload.get("output_tokens", 0)),
        )
        cost = float(payload.get("cost_usd", 0.0))
        self._account(turn, cost)
        self._add_message("assistant", blocks, turn.output_tokens, cost)
        return turn

    async def _record_turn(self, step: int, turn: TurnDone) -> float:
        spec = self._turn_spec
        cost = cost_usd(spec, turn.input_tokens, turn.output_tokens)
        payload = {
            "content": turn.content_blocks,
            "model": spec.name,
            "stop_reason": turn.stop_reason,
            "input_tokens": turn.input_tokens,
            "output_tokens": turn.output_tokens,
            "cost_usd": cost,
        }
        await self.inputs.checkpoint(step, "model_turn", 0, payload)
        self._account(turn, cost)
        self._add_message("assistant", turn.content_blocks, turn.output_tokens, cost)
        return cost

    def _account(self, turn: TurnDone, cost: float) -> None:
        self.result.input_tokens += turn.input_tokens
        self.result.output_tokens += turn.output_tokens
        self.result.cost_usd = round(self.result.cost_usd + cost, 9)

    def _add_message(
        self, role: Role, content: list[dict[str, Any]], tokens: int, cost: float
    ) -> None:
        self._messages.append({"role": role, "content": content})
        self.result.messages.append(TranscriptMessage(role, content, tokens, cost))

    def _attempts(self) -> list[ModelSpec]:
        per_model = 1 + max(self.inputs.model_retries, 0)
        return [spec for spec in self.inputs.chain for _ in range(per_model)]

    async def _model_turn(self, step: int) -> AsyncIterator[Event]:
        """Stream one turn, retrying on the same model and then the fallbacks.

        A model whose circuit is open (the gate says no) is skipped without a call."""
        self._turn = None
        last: ProviderError | None = None
        failed: ModelSpec | None = None
        skipped: list[str] = []  # models whose circuit was open
        for retry, spec in enumerate(self._attempts()):
            if not await self._gate_allows(spec):
                skipped.append(spec.name)
                last = last or ProviderError(f"circuit open for {spec.name}", retryable=True)
                continue
            if failed is not None and last is not None:
                yield events.step_retry(step, last.message[:200], spec.name)
                if failed == spec:
                    await asyncio.sleep(self._backoff_s(last.retry_after_s))
            self._turn_spec = spec
            reservation = await self._reserve(spec)
            if self.result.status == "failed":
                return
            span = telemetry.chat_span(
                spec,
                step=step,
                retry=retry,
                primary=self.inputs.chain[0],
                skipped=skipped,
                max_tokens=spec.max_tokens,
                messages=self._messages,
            )
            try:
                with tracing.ended(span):
                    try:
                        async for event in self._stream(step, spec, span):
                            yield event
                    except ProviderError as exc:
                        telemetry.call_failed(span, exc)
                        raise
                    cost = telemetry.call_succeeded(span, spec, self._turn)
            except ProviderError as exc:
                self._observe(spec, call_outcome(exc), 0.0)
                await self._settle(reservation, spec, billed=bool(self._partial))
                log.warning("model turn failed", extra={"model": spec.name, "error": exc.message})
                last, failed = exc, spec
                if not exc.retryable:
                    break
                await self._gate_record(spec, ok=False)
                continue
            self._observe(spec, "2xx", cost)
            await self._settle(reservation, spec, billed=bool(self._partial))
            if self._turn is not None:
                await self._gate_record(spec, ok=True)
            return
        self._provider_failed(last or ProviderError("no model available", retryable=True))

    def _observe(self, spec: ModelSpec, outcome: str, cost: float) -> None:
        if self.inputs.observer is not None:
            self.inputs.observer.model_call(spec, outcome=outcome, cost_usd=cost)

    async def _reserve(self, spec: ModelSpec) -> Any:
        """The call's worst case against the ceilings; a refusal fails the run."""
        guard = self.inputs.spend
        if guard is None:
            return None
        prompt_chars = sum(len(str(m.get("content", ""))) for m in self._messages)
        try:
            return await guard.reserve(spec, max_tokens=spec.max_tokens, prompt_chars=prompt_chars)
        except BudgetExceeded as exc:
            self._fail("cost_budget", str(exc), exc.reason)
            return None

    async def _settle(self, reservation: Any, spec: ModelSpec, *, billed: bool) -> None:
        """Settle to the real cost; a call that failed before any token costs nothing,
        one that failed mid-stream keeps its reservation (its tokens were billed)."""
        guard = self.inputs.spend
        if guard is None or reservation is None:
            return
        turn = self._turn
        if turn is not None:
            await guard.settle(reservation, cost_usd(spec, turn.input_tokens, turn.output_tokens))
        elif not billed:
            await guard.settle(reservation, 0.0)

    def _backoff_s(self, retry_after_s: float | None = None) -> float:
        """Exponential backoff with full jitter; a provider's Retry-After wins when longer.

        This loop is the only layer that retries model calls: the SDK clients
        are created with max_retries=0."""
        self._retries += 1
        ceiling = min(self.inputs.retry_backoff_s * 2 ** (self._retries - 1), 2.0)
        jittered = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto
        return max(jittered, retry_after_s or 0.0)

    async def _gate_allows(self, spec: ModelSpec) -> bool:
        gate = self.inputs.gate
        return True if gate is None else await gate.allow(spec)

    async def _gate_record(self, spec: ModelSpec, *, ok: bool) -> None:
        if self.inputs.gate is not None:
            await self.inputs.gate.record(spec, ok=ok)

    async def _stream(
        self, step: int, spec: ModelSpec, span: tracing.Span | None = None
    ) -> AsyncIterator[Event]:
        provider = self.inputs.providers.get(spec.provider)
        if provider is None:
            raise ProviderError(f"no {spec.provider} provider configured", retryable=True)
        self._partial = []
        stream = provider.stream_turn(
            spec=spec,
            system=self.inputs.system,
            messages=self._messages,
            tools=self.inputs.registry.schemas(),
            max_tokens=spec.max_tokens,
        )
        opening: tracing.Span | None = span
        try:
            while True:
                # The provider opens the call under the call's span (its log lines
                # carry it), never across our yield. Only until its first item:
                # after that it reads the answer, once per token, and making a
                # span current costs more there than it tells.
                try:
                    with tracing.current(opening):
                        item = await anext(stream)
                except StopAsyncIteration:
                    break
                opening = None
                if isinstance(item, TextDelta):
                    self._partial.append(item.text)
                    yield events.token(item.text, step)
                    reason = await self.inputs.should_stop()
                    if reason is not None:
                        self._stopped(reason, partial=True)
                        return
                else:
                    self._turn = item
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()  # closes the provider's HTTP stream when we stop early

    def _provider_failed(self, exc: ProviderError) -> None:
        reason: events.ErrorReason | None = "model_unavailable" if exc.retryable else None
        self._fail("provider_error", exc.message, reason)

    # tools

    async def _tools(self, step: int, calls: list[ToolCall]) -> AsyncIterator[Event]:
        results: list[dict[str, Any]] = []
        last_step = step + 1 >= self.inputs.step_budget
        for index, call in enumerate(calls):
            await self._check_stop_before_tool(step, index)
            if self.result.status != "running" or last_step:
                why = "step budget exhausted" if last_step else "the run was stopped"
                results.append(_result_block(call.id, f"not executed: {why}", True))
                continue
            async for event in self._tool(step, index, call, results):
                yield event
        self._add_message("user", results, 0, 0.0)
        if last_step and self.result.status == "running":
            self._budget_exhausted()

    async def _check_stop_before_tool(self, step: int, index: int) -> None:
        """A stop (a cancel learnt from the last checkpoint, say) prevents the next tool."""
        if self.result.status != "running" or (step, index) in self._restored.results:
            return
        reason = await self.inputs.should_stop()
        if reason is not None:
            self._stopped(reason)

    async def _tool(
        self, step: int, index: int, call: ToolCall, results: list[dict[str, Any]]
    ) -> AsyncIterator[Event]:
        done = self._restored.results.get((step, index))
        if done is not None:
            results.append(_result_block(call.id, str(done["content"]), bool(done["is_error"])))
            return
        yield events.tool_start(call.name, call.args, call.id, step)
        registry = self.inputs.registry
        if (step, index) in self._restored.started and not registry.is_idempotent(call.name):
            outcome = ToolOutcome(UNKNOWN_OUTCOME, is_error=True)
        else:
            if not registry.is_idempotent(call.name):
                started = {
                    "name": call.name,
                    "args": call.args,
                    "call_id": call.id,
                    "status": "started",
                }
                await self.inputs.checkpoint(step, "tool_call", index, started)
            key = dedupe_key(self.inputs.tool_context, step, index)
            outcome = await self._execute(call, key, step)
        if self.result.stop_reason is None:
            # An interrupted tool did not finish: recording "interrupted" as its
            # result would make a later attempt (after a lost lease) skip it.
            payload = {
                "call_id": call.id,
                "name": call.name,
                "content": outcome.content,
                "is_error": outcome.is_error,
            }
            await self.inputs.checkpoint(step, "tool_result", index, payload)
        results.append(_result_block(call.id, outcome.content, outcome.is_error))
        error = outcome.content[:500] if outcome.is_error else None
        yield events.tool_end(call.name, call.id, not outcome.is_error, error)

    async def _execute(self, call: ToolCall, key: str, step: int) -> ToolOutcome:
        """Run a tool (in its span) while watching `should_stop`; a stop cancels the tool."""
        with telemetry.tool_span(call.name, call_id=call.id, step=step, args=call.args) as span:
            outcome = await self._execute_watched(call, key)
            if span is not None:
                span.set_attribute("relay.tool.ok", not outcome.is_error)
                if outcome.is_error:
                    span.set_status(tracing.Status(tracing.StatusCode.ERROR, "tool error"))
                if tracing.CONTENT:
                    span.set_attribute("output.value", outcome.content[: telemetry.CONTENT_CAP])
            return outcome

    async def _execute_watched(self, call: ToolCall, key: str) -> ToolOutcome:
        ctx = dataclasses.replace(self.inputs.tool_context, dedupe_key=key)
        task = asyncio.create_task(self.inputs.registry.execute(call.name, call.args, ctx))
        try:
            while True:
                finished, _ = await asyncio.wait({task}, timeout=STOP_POLL_S)
                if finished:
                    return task.result()
                reason = await self.inputs.should_stop()
                if reason is not None:
                    self._stopped(reason)
                    return ToolOutcome(f"interrupted: the run was stopped ({reason})", True)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # endings

    def _stopped(self, reason: events.StopReason, *, partial: bool = False) -> None:
        if partial and self._partial:
            text = "".join(self._partial)
            self._add_message("assistant", [{"type": "text", "text": text}], 0, 0.0)
        self.result.stop_reason = reason
        self.result.status = "cancelled" if reason in CANCEL_REASONS else "failed"
        if reason != "cancelled":  # a plain cancel is no error
            self.result.error = events.run_error("stopped", f"stopped: {reason}", reason)

    def _budget_exhausted(self) -> None:
        budget = self.inputs.step_budget
        self._fail(
            "step_budget", f"step budget of {budget} steps exhausted", "step_budget_exceeded"
        )

    def _fail(self, type_: str, message: str, reason: events.ErrorReason | None) -> None:
        self.result.status = "failed"
        self.result.error = events.run_error(type_, message, reason)
