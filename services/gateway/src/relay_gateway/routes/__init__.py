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
    409: "Conflict (idempotency key reused with another body)",
    413: "Body or message too large",
    415: "Body is not JSON",
    422: "Invalid field",
    429: "Over a limit; see Retry-After",
    503: "Kill switch on, or a dependency down (see error.reason)",
}

AUTH = (401, 429, 503)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all in the one error shape."""
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]} for code in codes}
