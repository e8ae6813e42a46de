"""The gateway's HTTP routes, one module per resource. Each handler parses,
calls one service function and returns a model."""

from __future__ import annotations

from typing import Any

from relay_gateway.schemas import ErrorOut

_DESCRIPTIONS = {
    400: "Malformed request (body not JSON, bad cursor)",
    401: "Missing, invalid or revoked API key",
    403: "The API key lacks the admin role",
    404: "Unknown id, or another user's",
    409: (
        "Conflict: an Idempotency-Key reused with another body, or (reason "
        "`conversation_busy`) the conversation already has a run in progress"
    ),
    413: "Body or message too large",
    415: "Body is not JSON",
    422: "Invalid field",
    429: (
        "Over a limit (error.reason: `rate_limit`, `auth_failures`, `concurrent_runs`, "
        "`interactive_capacity`); retry after `Retry-After` seconds"
    ),
    503: "Kill switch on, or a dependency down (see error.reason)",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}

AUTH = (401, 429, 503)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all in the one error shape."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        out[code] = {"model": ErrorOut, "description": _DESCRIPTIONS[code]}
        if code == 429:
            out[code]["headers"] = _RETRY_AFTER
    return out
