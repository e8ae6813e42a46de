"""Gateway settings, read from `RELAY_*` environment variables.

The only module of the gateway that reads the environment. Limits that an API
key can override (`rate_limit_per_min`, `max_concurrent_runs`,
`default_run_limit_usd`, `default_daily_limit_usd`) are the defaults for keys
that carry no value of their own.
"""

from __future__ import annotations

from pydantic import Field

from relay_core.config import RelaySettings


class GatewaySettings(RelaySettings):
    port: int = Field(default=8080, ge=0, le=65535)
    management_port: int = Field(default=9080, ge=0, le=65535)
    # Base URL of the events service put in `events_url`; empty means the same
    # host as the gateway (an ingress routes `/v1/runs/{id}/events` there), so
    # `events_url` is then a path.
    events_public_url: str = ""
    max_body_bytes: int = Field(default=262_144, ge=1024)
    max_message_chars: int = Field(default=32_000, ge=1)
    default_model: str = "sim-default"
    # The model catalog (JSON or YAML); unset: relay_core's built-in catalog.
    models_file: str | None = None
    default_run_limit_usd: float = Field(default=1.0, gt=0)
    # A user's daily spend ceiling when the key sets none (enforced by runners).
    default_daily_limit_usd: float = Field(default=20.0, gt=0)
    auth_cache_ttl_s: float = Field(default=5.0, ge=0)
    # How long a key state does not know is answered 401 without asking again.
    auth_negative_ttl_s: float = Field(default=5.0, ge=0)
    # Failed authentications per minute per client address before 429
    # (relay_core.auththrottle); the events service has the same setting.
    auth_failures_per_min: int = Field(default=30, ge=1)
    rate_limit_per_min: int = Field(default=600, ge=1)
    max_concurrent_runs: int = Field(default=20, ge=1)
    # How often the kill switch and the interactive pool's usage are re-read for
    # /healthz and /metrics (a submit always reads Redis itself).
    kill_switch_refresh_s: float = Field(default=1.0, gt=0)
    # How long an interactive run waits for a free runner slot before its 429.
    interactive_queue_timeout_s: float = Field(default=10.0, ge=0, le=300)
    # The share of the interactive pool's slots (all runner replicas) one user
    # may hold at once, unless the key sets `interactive_share` (relay_core.capacity).
    interactive_tenant_share: float = Field(default=0.5, gt=0, le=1)
    # An interactive admission lapses after this even if no one releases it (a
    # bound on an interactive run's life, so a lost release frees its slot).
    interactive_admission_ttl_s: float = Field(default=900.0, gt=0)
    graceful_shutdown_s: float = Field(default=5.0, ge=0)
    # Interactive stream (POST /v1/chat/stream): SSE keep-alive period, and the
    # fan-out hub's Redis connections and per-subscriber buffer.
    keepalive_s: float = Field(default=15.0, gt=0)
    hub_max_connections: int = Field(default=8, ge=2, le=64)
    subscriber_buffer: int = Field(default=1000, ge=10)

    def events_url(self, run_id: str) -> str:
        return f"{self.events_public_url.rstrip('/')}/v1/runs/{run_id}/events"
