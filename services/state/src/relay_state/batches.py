"""Batches: many calls of one kind in one request, each carried out as its single call.

Why: under a burst, the fixed cost of a request (routing, validation,
serialization, the server's and the client's HTTP work) was about half of
state's CPU per run; a runner's claims, checkpoints and finishes, and a
gateway's creations, now come in batches when several wait at the same
moment (`relay_core.coalesce`).

Decisions:
- Each item runs the single call's own service function (`runs.create_run`,
  `attempts.claim_run`, `checkpoints.write_checkpoint`, `attempts.finish_run`),
  concurrently with the others, so every guarantee of the single call holds
  per item (fencing by attempt, the lease taken before the attempt, one
  transaction per finish, the Redis work after the commit) and no item waits
  on another's outcome.
- An item's failure is its answer (its status and the error shape), never the
  batch's: the others are carried out. Something unexpected in one item is
  logged and answered 500 for that item, as the single call would be.
- Metrics: the batch request is counted under its own route, and each item
  under its single call's route with its own status and time
  (`relay_state_requests_total`, `..._request_duration_seconds`), so the
  per-route dashboards keep counting claims, checkpoints and finishes.
- With tracing on, each item is a server span named as the single call's
  route and parented by the caller's trace context (`traceparent`); what
  the item stores as its trace context (a run's, an attempt's) is that
  span's. Except a checkpoint (`traced=False`): the runner's `checkpoint
  {kind}` span already times its write, end to end, and a span costs ~60 µs
  of CPU (docs/observability.md, "Cost").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from relay_core import tracing
from relay_core.errors import ApiError, error_body
from relay_core.state_api import BatchAnswer, BatchOut
from relay_state import metrics

log = logging.getLogger(__name__)


class Item(Protocol):
    @property
    def traceparent(self) -> str | None: ...


ItemT = TypeVar("ItemT", bound=Item)
# One item carried out: (its status, its answer).
Handler = Callable[[ItemT], Awaitable[tuple[int, BaseModel]]]


async def _one(
    item: ItemT, handle: Handler[ItemT], route: str, size: int, traced: bool
) -> BatchAnswer:
    started = time.perf_counter()
    if traced and tracing.ENABLED:
        parent = tracing.parent_from(item.traceparent)
        attributes = {"http.request.method": "POST", "http.route": route, "relay.batch.size": size}
        with tracing.span(
            f"POST {route}", kind=tracing.SpanKind.SERVER, parent=parent, attributes=attributes
        ):
            answer = await _answer(item, handle, route)
    else:
        answer = await _answer(item, handle, route)
    metrics.REQUESTS.labels(method="POST", route=route, status=str(answer.status)).inc()
    metrics.LATENCY.labels(method="POST", route=route).observe(time.perf_counter() - started)
    return answer


async def _answer(item: ItemT, handle: Handler[ItemT], route: str) -> BatchAnswer:
    try:
        status, answer = await handle(item)
        return BatchAnswer(status=status, body=answer.model_dump(mode="json"))
    except ApiError as exc:
        return BatchAnswer(status=exc.status, body=error_body(exc.type, exc.message, exc.reason))
    except Exception:
        log.exception("unhandled error in a batch item of %s", route)
        return BatchAnswer(
            status=500, body=error_body("internal", "internal error; it has been logged")
        )


async def carry_out(
    items: Sequence[ItemT], handle: Handler[ItemT], *, route: str, traced: bool = True
) -> BatchOut:
    """Every item as its single call `route` would be, concurrently; answers in order
    (`traced`: each item a span, see the module's docstring)."""
    answers: list[Any] = await asyncio.gather(
        *(_one(item, handle, route, len(items), traced) for item in items)
    )
    return BatchOut(answers=answers)
