"""Public request and response models of the gateway (DESIGN, "Public API").

These are the client contract, kept apart from state's internal wire models
(`relay_core.state_api`) so the internal API can grow fields (user ids,
cancel flags) without leaking them. Every model carries an example so
`/docs` shows a request a reader can send as is.

Why `message` has no `max_length` here: an oversized message is answered 413
(too large), not 422, so the service checks it against the configured limit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Ids minted by state (`run_…`, `conv_…`, `key_…`); user ids are the operator's.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"
USER_ID_PATTERN = r"^[A-Za-z0-9_.:@+-]{1,200}$"
MODEL_PATTERN = r"^[A-Za-z0-9_.:/@-]{1,100}$"
MAX_IDEMPOTENCY_KEY = 200
# A page cursor (state's `encode_cursor`: URL-safe base64 of a sequence number).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def no_nul(value: str) -> str:
    """Postgres text cannot hold NUL: refuse it here with a clear 422."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class ErrorDetail(BaseModel):
    type: str = Field(examples=["not_found"])
    message: str = Field(examples=["run not found"])
    reason: str | None = Field(default=None, examples=["kill_switch"])


class ErrorOut(BaseModel):
    """Every error: `{"error": {"type", "message", "reason"?}}`."""

    error: ErrorDetail


class SubmitRunIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"message": "What is 17 * 23? Use the calculator.", "max_cost_usd": 0.5}]
        },
    )

    message: str = Field(min_length=1, description="the user's message (at most the limit)")
    conversation_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="continue this conversation (yours); omit to start a new one",
    )
    model: str | None = Field(
        default=None,
        pattern=MODEL_PATTERN,
        description=(
            "model name, one of the catalog's (the schema lists them); the gateway's "
            "default (`RELAY_DEFAULT_MODEL`) when omitted"
        ),
    )
    max_cost_usd: float | None = Field(
        default=None, gt=0, le=10_000, description="cost ceiling of this run, in USD"
    )
    on_conflict: Literal["reject", "enqueue"] = Field(
        default="reject",
        description=(
            "when `conversation_id` already has a run queued or running: `reject` answers "
            "409 (reason `conversation_busy`); `enqueue` accepts the run, which starts "
            "once the runs before it in the conversation have finished"
        ),
    )

    @field_validator("message")
    @classmethod
    def _storable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be blank")
        return no_nul(value)


class ChatStreamIn(SubmitRunIn):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"message": "Hello!", "detach": False}]},
    )

    detach: bool = Field(
        default=False,
        description="keep the run going if the client disconnects (rejoin it on events_url)",
    )


class RunAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "run_01JD3K7Z8Q",
                    "status": "queued",
                    "conversation_id": "conv_01JD3K7Z8P",
                    "events_url": "/v1/runs/run_01JD3K7Z8Q/events",
                }
            ]
        }
    )

    run_id: str
    status: RunStatus
    conversation_id: str
    events_url: str = Field(description="SSE stream of the run's events (events service)")


class RunView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "run_01JD3K7Z8Q",
                    "status": "succeeded",
                    "conversation_id": "conv_01JD3K7Z8P",
                    "created_at": "2026-11-26T10:00:00Z",
                    "started_at": "2026-11-26T10:00:00.050Z",
                    "finished_at": "2026-11-26T10:00:02Z",
                    "attempts": 1,
                    "cost_usd": 0.0021,
                    "error": None,
                    "events_url": "/v1/runs/run_01JD3K7Z8Q/events",
                    "transcript_url": "/v1/conversations/conv_01JD3K7Z8P/messages",
                    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                }
            ]
        }
    )

    run_id: str
    status: RunStatus
    conversation_id: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    cost_usd: float = 0.0
    error: dict[str, Any] | None = Field(
        default=None, description="`{type, message, reason?}` when the run failed"
    )
    events_url: str = Field(description="SSE stream of the run's events (events service)")
    transcript_url: str = Field(description="the run's conversation transcript (this API)")
    trace_id: str | None = Field(
        default=None,
        description="the run's OpenTelemetry trace id (every span of the run, from submit "
        "to the last event, is in this trace); null when tracing was off at submit",
    )


class RunList(BaseModel):
    runs: list[RunView]
    next_cursor: str | None = Field(
        default=None,
        pattern=CURSOR_PATTERN,
        description="pass as `cursor` for the next page; null on the last page",
    )


class MessageView(BaseModel):
    role: Literal["user", "assistant"]
    content: list[dict[str, Any]] = Field(
        description="content blocks (`text`, `tool_use`, `tool_result`), Anthropic's format"
    )
    text: str = Field(description="the text blocks joined, for clients that want only text")
    run_id: str | None = None
    created_at: datetime | None = None


class MessagesView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "conversation_id": "conv_01JD3K7Z8P",
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "text", "text": "Hi"}],
                            "text": "Hi",
                            "run_id": "run_01JD3K7Z8Q",
                            "created_at": "2026-11-26T10:00:00Z",
                        }
                    ],
                }
            ]
        }
    )

    conversation_id: str
    messages: list[MessageView]


class KillSwitchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": True}]})

    enabled: bool


class KillSwitchOut(BaseModel):
    enabled: bool


class KeyLimitsIn(BaseModel):
    """The limits an API key may carry; each left out (or null) is the service's default."""

    model_config = ConfigDict(extra="forbid")

    run_limit_usd: float | None = Field(default=None, gt=0, le=10_000)
    daily_limit_usd: float | None = Field(default=None, gt=0, le=1_000_000)
    rate_limit_per_min: int | None = Field(
        default=None, ge=1, le=1_000_000, description="requests and stream opens per minute"
    )
    max_concurrent_runs: int | None = Field(default=None, ge=1, le=100_000)
    max_streams: int | None = Field(
        default=None, ge=1, le=1_000_000, description="event streams open at once (all replicas)"
    )
    interactive_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description=(
            "share of the interactive pool's runner slots the key's user may hold at once "
            "(default: half); 1 lets the user take the whole pool"
        ),
    )


class CreateKeyIn(KeyLimitsIn):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"user_id": "alice", "role": "user", "name": "alice laptop"}]
        },
    )

    user_id: str = Field(pattern=USER_ID_PATTERN)
    role: Literal["user", "admin"] = "user"
    name: str = Field(default="", max_length=200)

    _name_storable = field_validator("name")(no_nul)


class UpdateKeyIn(KeyLimitsIn):
    """`PATCH`: a limit sent is set (null: back to the default), one left out is kept."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"interactive_share": 1.0, "max_streams": 5000}]},
    )


class KeyView(BaseModel):
    key_id: str
    user_id: str
    role: Literal["user", "admin"]
    name: str
    prefix: str = Field(description="the first characters of the key, to recognise it")
    created_at: datetime
    revoked_at: datetime | None = None
    run_limit_usd: float | None = None
    daily_limit_usd: float | None = None
    rate_limit_per_min: int | None = None
    max_concurrent_runs: int | None = None
    max_streams: int | None = None
    interactive_share: float | None = None


class CreatedKeyView(KeyView):
    api_key: str = Field(description="the key itself: shown once, only its hash is stored")


class KeyList(BaseModel):
    keys: list[KeyView]


class Health(BaseModel):
    """The management port's detailed health (relay_core.management)."""

    status: Literal["ok"] = "ok"
    kill_switch: bool | None = Field(description="null when Redis could not be read lately")
    requests_in_flight: int
    streams_open: int
    interactive_in_flight: int | None = Field(
        description="interactive runs admitted and not finished (all replicas); null: Redis unread"
    )
    interactive_capacity: int | None = Field(
        description="runner slots of the live interactive runners; null: Redis unread"
    )


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, str]


class PoolOverview(BaseModel):
    pool: Literal["background", "interactive"]
    in_flight: int = Field(description="runs delivered to a runner and not finished")
    capacity: int = Field(description="run slots advertised by the pool's live runners")
    queue_lag: int = Field(description="queued runs no runner has picked up yet")


class BreakerView(BaseModel):
    model: str = Field(description="the catalog's model name")
    provider: str
    upstream_model: str
    state: Literal["closed", "half_open", "open"]


class SpendToday(BaseModel):
    day: str = Field(description="the UTC day, YYYY-MM-DD")
    cost_usd: float
    runs: int = Field(description="runs finished that day")
    runs_in_flight: int = Field(description="runs in flight that spent that day")


class OverviewOut(BaseModel):
    """What is in flight right now: for `relay top` and the web console."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kill_switch": False,
                    "pools": [
                        {"pool": "background", "in_flight": 3, "capacity": 8, "queue_lag": 0},
                        {"pool": "interactive", "in_flight": 1, "capacity": 8, "queue_lag": 0},
                    ],
                    "breakers": [
                        {
                            "model": "sim-default",
                            "provider": "anthropic",
                            "upstream_model": "sim-default",
                            "state": "closed",
                        }
                    ],
                    "spend_today": {
                        "day": "2026-11-26",
                        "cost_usd": 1.25,
                        "runs": 40,
                        "runs_in_flight": 3,
                    },
                }
            ]
        }
    )

    kill_switch: bool
    pools: list[PoolOverview]
    breakers: list[BreakerView]
    spend_today: SpendToday | None = Field(
        description="null when state could not be asked (the rest is still current)"
    )
