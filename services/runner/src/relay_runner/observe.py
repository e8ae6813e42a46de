"""The runner's `CallObserver`: each model call the agent loop makes, counted
by status class (`relay_runner_provider_calls_total`) and its cost added to
`relay_runner_cost_usd_total`, so the dashboards show the 429 rate of a
throttling provider and the cost alert reads dollars, not tokens."""

from __future__ import annotations

from relay_core.models import ModelSpec
from relay_runner import metrics

__all__ = ["CallMetrics"]


class CallMetrics:
    def __init__(self, pool: str) -> None:
        self.pool = pool

    def model_call(self, spec: ModelSpec, *, outcome: str, cost_usd: float) -> None:
        metrics.PROVIDER_CALLS.labels(self.pool, spec.provider, spec.upstream_model, outcome).inc()
        if cost_usd > 0:
            metrics.COST_USD.labels(self.pool, spec.upstream_model).inc(cost_usd)
