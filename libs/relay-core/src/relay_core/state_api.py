"""Wire models of state's internal HTTP API (`/internal/v1/...`).

state serves them; gateway, runner and events call them through
`StateClient`. Messages use Anthropic's block format for `content`
(`text`, `tool_use`, `tool_result` blocks), which is also what is stored.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Role = Literal["user", "admin"]
RunKind = Literal["background", "interactive"]
# What creating a run does when its conversation already has a run in flight:
# `reject` answers 409 (reason `conversation_busy`), `enqueue` records the run
# `queued` and holds it back until the active run ends, `allow` (the internal
# default, for callers that predate the rule) runs it concurrently.
OnConflict = Literal["allow", "reject", "enqueue"]
# Run ids minted by a caller (the gateway, so it can admit a run before it
# exists) must look like state's own: `run_` and 32 lowercase hex digits.
RUN_ID_PATTERN = r"^run_[0-9a-f]{32}$"

INTERNAL_PREFIX = "/internal/v1"
INTERNAL_TOKEN_HEADER = "X-Relay-Internal-Token"  # noqa: S105 - a header name


class KeyLimits(BaseModel):
    """The limits an API key may carry (None: the service's default)."""

    run_limit_usd: float | None = None
    daily_limit_usd: float | None = None
    rate_limit_per_min: int | None = None
    max_concurrent_runs: int | None = None
    # Event streams the key may hold open at once (the events service).
    max_streams: int | None = Field(default=None, ge=1)
    # Share of the interactive pool's slots the key's user may hold (0-1].
    interactive_share: float | None = Field(default=None, gt=0, le=1)


class Principal(KeyLimits):
    """Who an API key belongs to, and the limits on it (None: service default)."""

    key_id: str
    user_id: str
    role: Role = "user"


class VerifyKeyIn(BaseModel):
    key: str


class CreateKeyIn(KeyLimits):
    user_id: str = Field(min_length=1, max_length=200)
    role: Role = "user"
    name: str = Field(default="", max_length=200)


class UpdateKeyIn(KeyLimits):
    """The limits to change (`PATCH`): a field sent is set (null: back to the
    default), a field left out is kept."""


class KeyOut(KeyLimits):
    key_id: str
    user_id: str
    role: Role
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None


class CreatedKey(KeyOut):
    api_key: str  # shown once; only its hash is stored


class CreateRunIn(BaseModel):
    """The body of `POST /runs` (create) and of `POST /runs/replay` (the run a
    retry under `idempotency_key` is answered with, 404 if none; creates nothing)."""

    user_id: str
    message: str
    conversation_id: str | None = None
    model: str
    max_cost_usd: float | None = None
    kind: RunKind = "background"
    idempotency_key: str | None = None
    # Optional, additive: the caller's id for the new run (else state mints one).
    run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)
    on_conflict: OnConflict = "allow"
    # The user's daily spend ceiling in force for this run (the key's, else the
    # gateway's default); `max_cost_usd` is the run's own ceiling.
    daily_limit_usd: float | None = Field(default=None, gt=0)


class RunOut(BaseModel):
    run_id: str
    user_id: str
    conversation_id: str
    kind: RunKind
    status: str
    model: str
    max_cost_usd: float | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    cost_usd: float = 0.0
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    daily_limit_usd: float | None = None
    # Queued behind the active run of its conversation (not on a queue yet).
    deferred: bool = False
    # The W3C trace context the run was created in (None: tracing was off), and
    # its trace id: every span of the run, on any runner, is in that trace.
    traceparent: str | None = None
    trace_id: str | None = None


class RunStatusesIn(BaseModel):
    run_ids: list[str] = Field(max_length=1000)


class RunStatusesOut(BaseModel):
    """Status by run id; ids that name no run are left out."""

    statuses: dict[str, str]


class RunPage(BaseModel):
    runs: list[RunOut]
    next_cursor: str | None = None


class MessageOut(BaseModel):
    role: Literal["user", "assistant"]
    content: list[dict[str, Any]]
    run_id: str | None = None
    token_count: int = 0
    cost_usd: float = 0.0
    created_at: datetime | None = None


class MessagesOut(BaseModel):
    conversation_id: str
    messages: list[MessageOut]


class ClaimIn(BaseModel):
    consumer: str
    # The claiming runner's lease TTL (it renews at a third of it); None: state's default.
    lease_ttl_s: float | None = Field(default=None, gt=0, le=86400)


class CheckpointOut(BaseModel):
    step: int
    kind: str  # "model_turn" | "tool_call" | "tool_result"
    call_index: int = 0
    attempt: int
    payload: dict[str, Any]
    # Answering a checkpoint write: a cancel is recorded for the run. The durable
    # twin of the Redis cancel flag, which a Redis outage can lose.
    cancel_requested: bool = False


class ClaimOut(BaseModel):
    """A claimed run: its new attempt number (fencing token) and what it resumes from."""

    run: RunOut
    attempt: int
    history: list[MessageOut]  # the conversation so far, ending with this run's user message
    checkpoints: list[CheckpointOut]
    # The trace context of the claim before this one (a span of the previous
    # attempt), for the runner's `resumed` span to link to; None on a first claim.
    previous_traceparent: str | None = None


class CheckpointIn(BaseModel):
    attempt: int
    step: int
    kind: str
    call_index: int = 0
    payload: dict[str, Any]


class NewMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: list[dict[str, Any]]
    token_count: int = 0
    cost_usd: float = 0.0


class FinishIn(BaseModel):
    """Terminal status and the run's transcript, written in one transaction."""

    attempt: int
    status: Literal["succeeded", "failed", "cancelled"]
    error: dict[str, Any] | None = None
    cost_usd: float = 0.0
    # Totals of the run, for the cost ledger (per-message counts are in `messages`).
    input_tokens: int = 0
    output_tokens: int = 0
    messages: list[NewMessage] = Field(default_factory=list)


class DailySpendOut(BaseModel):
    """A user's recorded spend on a UTC day: the runs that finished that day (the
    cost ledger), plus the model turns that runs still in flight checkpointed
    that day. Re-seeds a lost daily counter."""

    user_id: str
    day: date
    cost_usd: float = 0.0
    runs: int = 0  # finished runs in the ledger
    runs_in_flight: int = 0  # runs in flight with a model turn checkpointed that day


class DailyTotalOut(BaseModel):
    """Every user's recorded spend on a UTC day, by the rules of `DailySpendOut`
    (the admin overview's "spend today")."""

    day: date
    cost_usd: float = 0.0
    runs: int = 0
    runs_in_flight: int = 0


class CancelIn(BaseModel):
    user_id: str


class DocumentIn(BaseModel):
    user_id: str
    title: str = Field(max_length=500)
    body: str


class DocumentOut(BaseModel):
    document_id: str
    title: str


class SearchHit(BaseModel):
    document_id: str
    title: str
    snippet: str
    rank: float


class SearchOut(BaseModel):
    results: list[SearchHit]


# Batches (`POST /internal/v1/batch/...`): the calls of one kind that a client has
# waiting at the same moment, in one request (`relay_core.coalesce`). Each
# item is the single call's body, the run it is for (the single call's path
# `{run_id}`) and the caller's W3C trace context; state carries each item out
# as it carries out the single call and answers, in order, each item's status
# and body (the single call's answer: its model, or the error shape).

MAX_BATCH_ITEMS = 256


class BatchAnswer(BaseModel):
    status: int
    body: Any


class BatchOut(BaseModel):
    answers: list[BatchAnswer]


class CreateRunItem(BaseModel):
    traceparent: str | None = None
    body: CreateRunIn


class ClaimItem(BaseModel):
    run_id: str
    traceparent: str | None = None
    body: ClaimIn


class CheckpointItem(BaseModel):
    run_id: str
    traceparent: str | None = None
    body: CheckpointIn


class FinishItem(BaseModel):
    run_id: str
    traceparent: str | None = None
    body: FinishIn


class CreateRunsIn(BaseModel):
    items: list[CreateRunItem] = Field(max_length=MAX_BATCH_ITEMS)


class ClaimsIn(BaseModel):
    items: list[ClaimItem] = Field(max_length=MAX_BATCH_ITEMS)


class CheckpointsIn(BaseModel):
    items: list[CheckpointItem] = Field(max_length=MAX_BATCH_ITEMS)


class FinishesIn(BaseModel):
    items: list[FinishItem] = Field(max_length=MAX_BATCH_ITEMS)
