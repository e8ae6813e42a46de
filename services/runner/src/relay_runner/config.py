"""Settings of the runner; the only module of the runner that reads the environment.

Why the model API keys are checked only when used: a runner pool that has no
OpenAI-compatible endpoint configured (`RELAY_OPENAI_BASE_URL` unset) must
not be forced to invent an OpenAI key; the Anthropic key is always needed.
"""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field, SecretStr

from relay_core.config import RelaySettings


class RunnerSettings(RelaySettings):
    # The management port (probes, metrics) is the runner's only port: it has no
    # public API, so no `port` (0 here, never bound).
    port: int = 0
    management_port: int = Field(default=9083, ge=0, le=65535)
    runner_pool: Literal["background", "interactive"] = "background"
    runner_concurrency: int = Field(default=8, ge=1, le=1000)
    consumer_name: str = Field(default_factory=socket.gethostname, min_length=1, max_length=200)
    lease_ttl_s: float = Field(default=30.0, gt=0)
    drain_timeout_s: float = Field(default=60.0, ge=0)
    max_deliveries: int = Field(default=5, ge=1)
    step_budget: int = Field(default=20, ge=1, le=1000)
    events_retention_s: float = Field(default=86400.0, gt=0)
    events_maxlen: int = Field(default=100_000, ge=100)
    block_ms: int = Field(default=1000, ge=10, le=60_000)
    # How often the cancel flags of the runs in flight and the kill switch are read
    # (one MGET for all the process's runs; `stopflags`).
    cancel_check_s: float = Field(default=0.1, ge=0)
    # How long an event write may wait for others to share its Redis call (0: only
    # writes that wait anyway, behind a call in flight, share one). Never the
    # events up to a run's first token (`publish`).
    event_linger_s: float = Field(default=0.0, ge=0, le=0.1)
    # How often idle entries of dead runners are looked for (default: lease_ttl_s / 3).
    autoclaim_interval_s: float | None = Field(default=None, gt=0)
    anthropic_base_url: str | None = None
    anthropic_api_key: SecretStr = SecretStr("sim-key")
    openai_base_url: str | None = None
    openai_api_key: SecretStr = SecretStr("sim-key")
    model_timeout_s: float = Field(default=300.0, gt=0)
    models_file: str | None = None
    extra_tools: str | None = None
    system_prompt: str | None = None
    # Circuit breaker per (provider, model), shared through Redis (relay_runner.breaker).
    breaker_window_s: float = Field(default=30.0, gt=0)
    breaker_min_calls: int = Field(default=5, ge=1)
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_open_s: float = Field(default=15.0, gt=0)

    @property
    def autoclaim_every_s(self) -> float:
        return self.autoclaim_interval_s or self.lease_ttl_s / 3

    def secret_fields(self) -> dict[str, SecretStr | None]:
        fields = super().secret_fields()
        fields["anthropic_api_key"] = self.anthropic_api_key
        if self.openai_base_url:
            fields["openai_api_key"] = self.openai_api_key
        return fields
