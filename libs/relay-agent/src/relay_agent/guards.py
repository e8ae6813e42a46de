"""What the caller lends the loop to keep a run within bounds: the interfaces only.

The loop decides WHEN to ask (before every step, after every text delta,
before and while every tool; before and after every model call); the caller
decides HOW, with whatever shared state it has. Relay's runner backs them
with Redis so every replica sees the same limits: the circuit breakers
(`relay_runner.breaker`, behind `relay_runner.gate.BreakerGate`), the cost
ceilings (`relay_runner.budget`, behind `relay_runner.spend.RunSpend`), and
the cancel flags and kill switch (`relay_runner.stopflags`). Each is
optional but the stop function, so the loop runs as a plain library too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from relay_core.events import StopReason
from relay_core.models import ModelSpec

__all__ = [
    "CANCEL_REASONS",
    "BudgetExceeded",
    "BudgetReason",
    "CallObserver",
    "ModelGate",
    "SpendGuard",
    "StopFn",
]

# Why the run must stop now (`relay_core.events.StopReason`), or None to go on.
StopFn = Callable[[], Awaitable[StopReason | None]]

# StopFn reasons that end a run `cancelled`; any other reason ends it `failed`.
CANCEL_REASONS = frozenset({"cancelled", "kill_switch"})


# Members of `relay_core.events.ErrorReason`: the loop fails the run with it.
BudgetReason = Literal["cost_budget_exceeded", "daily_budget_exceeded"]


class BudgetExceeded(Exception):
    """A model call that does not fit a cost ceiling; the run fails with `reason`."""

    def __init__(self, reason: BudgetReason, message: str) -> None:
        super().__init__(message)
        self.reason: BudgetReason = reason


class ModelGate(Protocol):
    """Whether a model may be called now (a circuit breaker), and how calls went.

    Client errors (not retryable) are not recorded: they are not the model's fault."""

    async def allow(self, spec: ModelSpec) -> bool: ...

    async def record(self, spec: ModelSpec, *, ok: bool) -> None: ...


class SpendGuard(Protocol):
    """Reserves a model call's worst case before it goes out, settles it after.

    `reserve` raises `BudgetExceeded` when the call does not fit; what it
    returns is handed back to `settle` with the call's real cost (0.0 for a
    call that failed before any token; a call that failed mid-stream is not
    settled, its tokens were billed)."""

    async def reserve(self, spec: ModelSpec, *, max_tokens: int, prompt_chars: int) -> Any: ...

    async def settle(self, reservation: Any, cost_usd: float) -> None: ...


class CallObserver(Protocol):
    """Hears how each model call went, for metrics: its status class
    (`providers.call_outcome`: `2xx`, `429`, `4xx`, `5xx`, `timeout`,
    `connection`) and what it cost in USD (0 when it failed)."""

    def model_call(self, spec: ModelSpec, *, outcome: str, cost_usd: float) -> None: ...
