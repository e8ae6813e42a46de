"""Exceptions: every refusal of the API carries its status, type and `reason`.

The API answers every error as `{"error": {"type", "message", "reason"?}}`;
`RelayError.from_response` turns that into the exception a caller can act
on (`except RateLimited as exc: exc.retry_after_s`). The message is the
API's own, so printing the exception is the one clear line a user needs.
"""

from __future__ import annotations

import httpx

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "ConnectionLost",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RelayError",
    "ServiceUnavailable",
    "retry_after_s",
]


def retry_after_s(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (the API sends delta-seconds), or None."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class RelayError(Exception):
    """The API refused a request, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        type: str = "error",
        reason: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.reason = reason
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_response(cls, response: httpx.Response) -> RelayError:
        """The exception for an error response (read its body first)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            message = str(error.get("message") or response.reason_phrase)
            kind = str(error.get("type") or "error")
            reason = error.get("reason") if isinstance(error.get("reason"), str) else None
        else:
            text = response.text.strip()[:200]
            message = f"HTTP {response.status_code}: {text or response.reason_phrase}"
            kind, reason = "error", None
        exc_class = _BY_STATUS.get(response.status_code, cls)
        if exc_class is RelayError and 400 <= response.status_code < 500:
            exc_class = InvalidRequest
        return exc_class(
            message,
            status=response.status_code,
            type=kind,
            reason=reason,
            retry_after_s=retry_after_s(response),
        )


class InvalidRequest(RelayError):
    """400, 413, 415, 422: the request itself is wrong."""


class AuthenticationError(RelayError):
    """401: missing, invalid or revoked API key."""


class PermissionDenied(RelayError):
    """403: the key lacks the admin role."""


class NotFound(RelayError):
    """404: unknown id, or another user's."""


class ConflictError(RelayError):
    """409: an Idempotency-Key reused with another body, a busy conversation."""


class RateLimited(RelayError):
    """429: over a limit; `retry_after_s` says when to come back."""


class ServiceUnavailable(RelayError):
    """503: the kill switch (`reason == "kill_switch"`) or a dependency down."""


class ConnectionLost(RelayError):
    """The server could not be reached again within the reconnect deadline."""


_BY_STATUS: dict[int, type[RelayError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: ConflictError,
    429: RateLimited,
    503: ServiceUnavailable,
}
