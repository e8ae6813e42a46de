"""relay-client: the Python SDK of Relay.

A run's stream resumes exactly once after any drop (Last-Event-ID, jittered
backoff), applies `step_retry` and `resumed` to the text, and after a
`resync` ends with the transcript's text: the caller never loses or
duplicates a token, whatever the network does.
"""

from relay_client.aclient import AsyncRelayClient
from relay_client.astream import AsyncRunStream
from relay_client.client import RelayClient
from relay_client.errors import (
    AuthenticationError,
    ConflictError,
    ConnectionLost,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    RelayError,
    ServiceUnavailable,
)
from relay_client.retry import RetryPolicy
from relay_client.stream import RunStream

__all__ = [
    "AsyncRelayClient",
    "AsyncRunStream",
    "AuthenticationError",
    "ConflictError",
    "ConnectionLost",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RelayClient",
    "RelayError",
    "RetryPolicy",
    "RunStream",
    "ServiceUnavailable",
]
