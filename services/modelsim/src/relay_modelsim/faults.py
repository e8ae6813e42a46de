"""Injected faults: a global fault set by `PUT /admin/faults`, and `fail_times`.

Decisions:

- The global fault is scoped: both `error_rate` and `latency_ms` apply to
  requests for the listed `models` only (any model when `models` is null), so a
  test can make a primary model slow or failing and watch the fallback work.
- `PUT` replaces the whole fault (fields left out take their defaults), so a
  test's state never depends on what an earlier test set.
- Error draws use their own `random.Random` (seedable through
  `RELAY_MODELSIM_FAULT_SEED`); `error_rate` 1.0 always fails and 0.0 never
  does, without touching the RNG.
- `fail_times` counters are keyed by the directive's fingerprint and are reset
  with the rest of the fault state by `POST /admin/reset`.
"""

from __future__ import annotations

import random
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FaultConfig", "Faults"]


class FaultConfig(BaseModel):
    """The global fault; the defaults mean "no fault"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    latency_ms: float = Field(default=0.0, ge=0.0)
    status: int = Field(default=529, ge=400, le=599)
    type: str = Field(default="overloaded_error", min_length=1)
    message: str | None = None
    models: list[str] | None = None

    def applies_to(self, model: str) -> bool:
        return self.models is None or model in self.models


class Faults:
    """Mutable fault state shared by the request handlers of one app."""

    def __init__(self, *, seed: int | None = None) -> None:
        self._seed = seed
        self._rng = random.Random(seed)  # noqa: S311 - fault draws, not crypto
        self.config = FaultConfig()
        self._directive_failures: Counter[str] = Counter()

    def set(self, config: FaultConfig) -> None:
        self.config = config

    def reset(self) -> None:
        self.config = FaultConfig()
        self._rng = random.Random(self._seed)  # noqa: S311
        self._directive_failures.clear()

    def latency_s(self, model: str) -> float:
        cfg = self.config
        return cfg.latency_ms / 1000.0 if cfg.applies_to(model) else 0.0

    def draw_error(self, model: str) -> bool:
        """True when this request to `model` must fail with the global fault."""
        cfg = self.config
        if cfg.error_rate <= 0.0 or not cfg.applies_to(model):
            return False
        return cfg.error_rate >= 1.0 or self._rng.random() < cfg.error_rate

    def take_directive_failure(self, key: str, times: int | None) -> bool:
        """True if a directive's `fail` applies now: always, or the first `times` uses."""
        if times is None:
            return True
        used = self._directive_failures[key]
        self._directive_failures[key] = used + 1
        return used < times
