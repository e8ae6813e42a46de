"""Runs and conversations: what the public run endpoints do.

Routes parse and call one function here; these functions validate what
pydantic cannot (sizes that answer 413, the model catalog, the caller's cost
limit), admit the run (`admission`: the kill switch, the user's concurrent
runs, an interactive runner slot) under a run id minted here, and
call state, which owns every row, decides one active run per conversation,
and enqueues the run in the same step that records it. A creation that fails
in flight (timed out after the request went out) may still happen in state:
that run id is then cancelled in the background (`cancels.request_orphan`),
so it never executes for nobody (unless an `Idempotency-Key` lets the client
claim it by retrying). A retry under an `Idempotency-Key` is answered with
its run even when the user is at the concurrent-runs limit or the
interactive pool is full (`find_replay`, asked only then, so the happy path
keeps its one call to state): the 429 is for a new run. Every read passes the
caller's user id to state, which answers 404 for another user's id; ids that
could not have been minted by state are answered 404 here without a call
(they also never reach a URL unescaped).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from relay_core import state_api
from relay_core.errors import ApiError
from relay_core.models import ModelCatalog
from relay_core.state_api import Principal, RunKind
from relay_core.state_client import StateUnavailable
from relay_gateway import admission, runids
from relay_gateway.config import GatewaySettings
from relay_gateway.runtime import Runtime
from relay_gateway.schemas import (
    ID_PATTERN,
    MessagesView,
    MessageView,
    RunAccepted,
    RunList,
    RunStatus,
    RunView,
    SubmitRunIn,
)
from relay_gateway.upstream import from_state

log = logging.getLogger(__name__)

_ID = re.compile(ID_PATTERN)


def transcript_url(conversation_id: str) -> str:
    """Where a conversation's transcript is read (the `resync` event's link too)."""
    return f"/v1/conversations/{conversation_id}/messages"


def check_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise ApiError(404, f"{what} not found")
    return value


def check_message(message: str, max_chars: int) -> None:
    if len(message) > max_chars:
        raise ApiError(413, f"message is {len(message)} characters; the limit is {max_chars}")


def resolve_model(catalog: ModelCatalog, name: str) -> str:
    if name not in catalog:
        known = ", ".join(catalog.names())
        raise ApiError(422, f"unknown model {name!r}; known models: {known}")
    return name


def run_cost_limit(
    settings: GatewaySettings, principal: Principal, requested: float | None
) -> float:
    """The run's cost ceiling: the request's, else the default, never above the key's."""
    key_limit = principal.run_limit_usd
    if requested is not None:
        if key_limit is not None and requested > key_limit:
            raise ApiError(
                422, f"max_cost_usd {requested} is above this key's run limit of {key_limit}"
            )
        return requested
    default = settings.default_run_limit_usd
    return min(default, key_limit) if key_limit is not None else default


@dataclass(frozen=True)
class Submitted:
    run: RunAccepted
    replayed: bool
    record: state_api.RunOut  # state's record, for the interactive stream


async def submit_run(
    *,
    runtime: Runtime,
    principal: Principal,
    body: SubmitRunIn,
    idempotency_key: str | None,
    kind: RunKind = "background",
) -> Submitted:
    settings = runtime.settings
    check_message(body.message, settings.max_message_chars)
    model = resolve_model(runtime.catalog, body.model or settings.default_model)
    max_cost = run_cost_limit(settings, principal, body.max_cost_usd)
    req = state_api.CreateRunIn(
        user_id=principal.user_id,
        message=body.message,
        conversation_id=body.conversation_id,
        model=model,
        max_cost_usd=max_cost,
        kind=kind,
        idempotency_key=idempotency_key,
        run_id=runids.new_run_id(),  # minted here: its slots are taken before it exists
        on_conflict=body.on_conflict,
        daily_limit_usd=principal.daily_limit_usd or settings.default_daily_limit_usd,
    )
    run, created = await _create(runtime=runtime, principal=principal, req=req)
    runtime.metrics.runs_submitted.labels(kind, str(not created).lower()).inc()
    log.info("run accepted", extra={"run_id": run.run_id, "kind": kind, "replayed": not created})
    accepted = RunAccepted(
        run_id=run.run_id,
        status=cast(RunStatus, run.status),  # validated against RunStatus by the constructor
        conversation_id=run.conversation_id,
        events_url=settings.events_url(run.run_id),
    )
    return Submitted(run=accepted, replayed=not created, record=run)


def may_have_arrived(exc: StateUnavailable) -> bool:
    """Whether state may have received (and may still carry out) the request: it
    was sent, and no answer came back (a timeout, a dropped connection). A
    connection that was never made, or an answer from state, means it did not."""
    return exc.status == 0 and exc.sent


async def _create_in_state(
    *, runtime: Runtime, principal: Principal, req: state_api.CreateRunIn
) -> tuple[state_api.RunOut, bool]:
    """`create_run`; when it fails in a way that may still create the run (the
    request timed out in flight), that run id is cancelled in the background.

    Not with an `Idempotency-Key`: the key is how a client retries after such
    a failure, and its retry is answered with that very run, which then has
    an owner (a cancel would stop the run the retry was promised)."""
    try:
        return await runtime.state.create_run(req)
    except StateUnavailable as exc:
        if req.run_id and req.idempotency_key is None and may_have_arrived(exc):
            log.warning(
                "create_run failed in flight (%s); cancelling the run in case it is created",
                exc,
                extra={"run_id": req.run_id},
            )
            runtime.cancels.request_orphan(req.run_id, user_id=principal.user_id)
        raise


async def find_replay(*, runtime: Runtime, req: state_api.CreateRunIn) -> state_api.RunOut | None:
    """The run an earlier attempt under `req`'s Idempotency-Key created, as
    `create_run` would replay it, or None; asked by admission only when it
    would refuse the submission with 429. A key used for a different request
    is the 409 a creation answers; when state cannot tell (down, or too old
    to know the lookup) the refusal stands (None)."""
    try:
        with from_state("submit run"):
            return await runtime.state.find_replay(req)
    except ApiError as exc:
        if exc.status == 409:
            raise
        log.warning("idempotent replay lookup failed: %s", exc.message)
        return None


async def _create(
    *, runtime: Runtime, principal: Principal, req: state_api.CreateRunIn
) -> tuple[state_api.RunOut, bool]:
    """Admit the run under its new id, then create it; slots go back if it is not created.
    A retry refused for lack of room is answered with its earlier run (`find_replay`)."""
    run_id = req.run_id or ""  # always set by submit_run

    async def replay() -> state_api.RunOut | None:
        return await find_replay(runtime=runtime, req=req)

    held = await admission.admit(
        runtime=runtime,
        principal=principal,
        run_id=run_id,
        kind=req.kind,
        find_replay=replay if req.idempotency_key is not None else None,
    )
    if held.replay is not None:
        return held.replay, False
    try:
        with from_state("submit run", not_found="conversation not found"):
            run, created = await _create_in_state(runtime=runtime, principal=principal, req=req)
    except BaseException as exc:
        await held.release()
        if isinstance(exc, ApiError) and exc.reason == "conversation_busy":
            runtime.metrics.admissions_refused.labels("conversation_busy").inc()
        raise
    await held.confirm(run)
    return run, created


_RUN_VIEW_FIELDS: set[str] = set(RunView.model_fields)


def run_view(run: state_api.RunOut, settings: GatewaySettings) -> RunView:
    """The public view of a run, with the links a client follows next."""
    return RunView.model_validate(
        {
            **run.model_dump(include=_RUN_VIEW_FIELDS),
            "events_url": settings.events_url(run.run_id),
            "transcript_url": transcript_url(run.conversation_id),
        }
    )


async def get_run(*, runtime: Runtime, principal: Principal, run_id: str) -> RunView:
    check_id(run_id, "run")
    with from_state("get run", not_found="run not found"):
        run = await runtime.state.get_run(run_id, user_id=principal.user_id)
    return run_view(run, runtime.settings)


async def list_runs(
    *,
    runtime: Runtime,
    principal: Principal,
    limit: int,
    cursor: str | None,
    statuses: Sequence[str] | None = None,
) -> RunList:
    with from_state("list runs"):
        page = await runtime.state.list_runs(
            user_id=principal.user_id, limit=limit, cursor=cursor, statuses=statuses
        )
    views = [run_view(r, runtime.settings) for r in page.runs]
    return RunList(runs=views, next_cursor=page.next_cursor)


async def cancel_run(*, runtime: Runtime, principal: Principal, run_id: str) -> RunView:
    check_id(run_id, "run")
    with from_state("cancel run", not_found="run not found"):
        run = await runtime.state.cancel_run(run_id, user_id=principal.user_id)
    log.info("run cancel requested", extra={"run_id": run_id})
    return run_view(run, runtime.settings)


def message_view(message: state_api.MessageOut) -> MessageView:
    text = "".join(
        str(block.get("text", "")) for block in message.content if block.get("type") == "text"
    )
    return MessageView(
        role=message.role,
        content=message.content,
        text=text,
        run_id=message.run_id,
        created_at=message.created_at,
    )


async def conversation_messages(
    *, runtime: Runtime, principal: Principal, conversation_id: str
) -> MessagesView:
    check_id(conversation_id, "conversation")
    with from_state("get messages", not_found="conversation not found"):
        out = await runtime.state.messages(conversation_id, user_id=principal.user_id)
    return MessagesView(
        conversation_id=out.conversation_id, messages=[message_view(m) for m in out.messages]
    )
