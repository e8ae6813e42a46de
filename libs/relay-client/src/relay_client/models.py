"""The public API's request and response bodies, as the gateway documents them.

Written by hand, and checked against the gateway's OpenAPI document by
`tests/test_openapi_drift.py` (same fields, same required ones), so a change
to the API that the SDK does not follow fails a test. Unknown fields from a
newer server are ignored, so an older SDK keeps working.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RunAccepted(_Model):
    run_id: str
    status: RunStatus
    conversation_id: str
    events_url: str


class Run(_Model):
    run_id: str
    status: RunStatus
    conversation_id: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    cost_usd: float = 0.0
    error: dict[str, Any] | None = None
    events_url: str
    transcript_url: str
    trace_id: str | None = None  # the run's OpenTelemetry trace (null: tracing off at submit)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class RunList(_Model):
    runs: list[Run]
    next_cursor: str | None = None


class Message(_Model):
    role: Literal["user", "assistant"]
    content: list[dict[str, Any]]
    text: str
    run_id: str | None = None
    created_at: datetime | None = None


class Transcript(_Model):
    conversation_id: str
    messages: list[Message]

    def run_text(self, run_id: str) -> str:
        """What the assistant said in one run: its text blocks, in order."""
        return "".join(
            m.text for m in self.messages if m.role == "assistant" and m.run_id == run_id
        )


class KillSwitch(_Model):
    enabled: bool


class ApiKey(_Model):
    key_id: str
    user_id: str
    role: Literal["user", "admin"]
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    # The key's limits; None: the service's default.
    run_limit_usd: float | None = None
    daily_limit_usd: float | None = None
    rate_limit_per_min: int | None = None
    max_concurrent_runs: int | None = None
    max_streams: int | None = None
    interactive_share: float | None = None


class CreatedApiKey(ApiKey):
    api_key: str


class KeyList(_Model):
    keys: list[ApiKey]


class PoolOverview(_Model):
    pool: Literal["background", "interactive"]
    in_flight: int
    capacity: int
    queue_lag: int


class BreakerView(_Model):
    model: str
    provider: str
    upstream_model: str
    state: Literal["closed", "half_open", "open"]


class SpendToday(_Model):
    day: str
    cost_usd: float
    runs: int
    runs_in_flight: int


class Overview(_Model):
    kill_switch: bool
    pools: list[PoolOverview]
    breakers: list[BreakerView]
    spend_today: SpendToday | None = None


class ErrorDetail(_Model):
    type: str
    message: str
    reason: str | None = None


class ErrorBody(_Model):
    error: ErrorDetail


# The gateway's OpenAPI component behind each model (the drift test's map).
OPENAPI_SCHEMAS: dict[str, type[BaseModel]] = {
    "RunAccepted": RunAccepted,
    "RunView": Run,
    "RunList": RunList,
    "MessageView": Message,
    "MessagesView": Transcript,
    "KillSwitchOut": KillSwitch,
    "KeyView": ApiKey,
    "CreatedKeyView": CreatedApiKey,
    "KeyList": KeyList,
    "PoolOverview": PoolOverview,
    "BreakerView": BreakerView,
    "SpendToday": SpendToday,
    "OverviewOut": Overview,
    "ErrorDetail": ErrorDetail,
    "ErrorOut": ErrorBody,
}
