"""How a failure of state's internal API becomes a public error.

`StateClient` raises one of four exceptions; this is the one place they turn
into DESIGN's statuses, so every route answers them alike: unknown or another
user's id → 404, conflict → 409 (with state's reason, such as
`conversation_busy`), state down or slow → 503 with reason
`state_unavailable`, and any other refusal from state → 503 with reason
`state_error` (a bug to fix in state, but still no trace for the client).
A 400 from state (a malformed cursor, say) is the client's mistake: 400.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from relay_core.errors import ApiError, ApiReason, is_api_reason
from relay_core.state_client import Conflict, NotFound, StateError, StateUnavailable

log = logging.getLogger(__name__)


def state_unavailable(what: str) -> ApiError:
    return ApiError(503, f"{what}: state service unavailable", reason="state_unavailable")


def _reason(exc: StateError) -> ApiReason | None:
    """State's `error.reason` (`conversation_busy`, ...), passed on to the client
    when it is one of `ApiReason` (state gives no other)."""
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    reason = error.get("reason") if isinstance(error, dict) else None
    return reason if is_api_reason(reason) else None


@contextmanager
def from_state(what: str, *, not_found: str = "not found") -> Iterator[None]:
    """Map state failures raised in the block; `what` names the operation."""
    try:
        yield
    except NotFound as exc:
        raise ApiError(404, not_found) from exc
    except Conflict as exc:
        raise ApiError(409, str(exc) or f"{what}: conflict", reason=_reason(exc)) from exc
    except StateUnavailable as exc:
        log.warning("%s: state unavailable (%s)", what, exc)
        raise state_unavailable(what) from exc
    except StateError as exc:
        if exc.status in (400, 422):
            raise ApiError(400, str(exc) or f"{what}: invalid request") from exc
        log.error("%s: state answered %s: %s", what, exc.status, exc)
        raise ApiError(503, f"{what}: state service error", reason="state_error") from exc
