"""Prometheus metrics of the runner (`GET /metrics`).

`relay_runner_runs_in_flight` and `relay_runner_capacity` per pool are the
autoscaling signals (in-flight / capacity); the rest is for dashboards.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS_IN_FLIGHT = Gauge("relay_runner_runs_in_flight", "Runs executing now", ["pool"])
CAPACITY = Gauge("relay_runner_capacity", "Runs this process may execute at once", ["pool"])
# The platform's share of a user's wait, from the run's queue entry (its id is
# Redis's clock; the runner's own is compared with it, so skew between hosts
# shows here, up to the NTP error). Buckets from a fast claim to a stuck queue.
_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
QUEUE_WAIT = Histogram(
    "relay_runner_queue_wait_seconds",
    "From a run's queue entry to its claim by this runner (entries delivered once)",
    ["pool"],
    buckets=_WAIT_BUCKETS,
)
FIRST_TOKEN = Histogram(
    "relay_runner_first_token_seconds",
    "From a run's queue entry to its first token stored in its event stream (first attempts)",
    ["pool"],
    buckets=_WAIT_BUCKETS,
)
RUNS_FINISHED = Counter(
    "relay_runner_runs_finished_total", "Runs finished by this runner", ["pool", "status"]
)
RUNS_RELEASED = Counter(
    "relay_runner_runs_released_total",
    "Runs handed back to the queue (shutdown) or given up (superseded)",
    ["pool", "why"],
)
STEPS = Counter("relay_runner_steps_total", "Model turns completed", ["pool"])
STEP_RETRIES = Counter("relay_runner_step_retries_total", "Model turns retried", ["pool"])
TOOL_CALLS = Counter("relay_runner_tool_calls_total", "Tool calls", ["pool", "tool", "ok"])
MODEL_TOKENS = Counter(
    "relay_runner_model_tokens_total", "Model tokens billed", ["pool", "direction"]
)
CLAIM_CONFLICTS = Counter(
    "relay_runner_claim_conflicts_total", "Claims refused by state", ["pool", "reason"]
)
DEAD_LETTERED = Counter("relay_runner_dead_lettered_total", "Runs sent to dead letters", ["pool"])
EVENTS_FENCED = Counter(
    "relay_runner_events_fenced_total", "Event writes dropped: the lease had changed", ["pool"]
)
EVENT_WRITES = Counter(
    "relay_runner_event_writes_total", "Run events sent to Redis (fenced writes)", ["pool"]
)
EVENT_WRITE_CALLS = Counter(
    "relay_runner_event_write_calls_total",
    "Calls that sent them: one call writes a batch (writes / calls = batch size; on a "
    "Redis Cluster a call is one pipeline of a script per partition)",
    ["pool"],
)
DEPENDENCY_ERRORS = Counter(
    "relay_runner_dependency_errors_total", "Redis or state calls that failed", ["dependency"]
)
BREAKER_STATE = Gauge(
    "relay_runner_breaker_state",
    "Circuit breaker per model as this runner last saw it: 0 closed, 1 half-open, 2 open",
    ["provider", "model"],
)
PROVIDER_CALLS = Counter(
    "relay_runner_provider_calls_total",
    "Model calls by status class: 2xx, 429, 4xx, 5xx, timeout, connection",
    ["pool", "provider", "model", "outcome"],
)
COST_USD = Counter(
    "relay_runner_cost_usd_total",
    "Spend on model calls in USD (catalog prices), as the calls end",
    ["pool", "model"],
)
