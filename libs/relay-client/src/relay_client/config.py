"""Where the API is and how to call it: shared by the sync and async clients.

`base_url` and `api_key` default to `RELAY_URL` and `RELAY_API_KEY`. The key
goes in the `Authorization` header of every request and nowhere else: never
in a URL, never in a log line, never in `repr()`.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from relay_client.errors import AuthenticationError
from relay_client.retry import RetryPolicy

__all__ = ["DEFAULT_URL", "ClientConfig", "new_idempotency_key"]

DEFAULT_URL = "http://127.0.0.1:8080"
# The events service sends a keep-alive every 15 s: a stream silent for three
# of them is dead (a network that dropped without a reset), so reconnect.
STREAM_READ_TIMEOUT_S = 45.0


def new_idempotency_key() -> str:
    return f"relay-py-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    api_key: str = field(repr=False)
    timeout_s: float = 30.0
    stream_read_timeout_s: float = STREAM_READ_TIMEOUT_S
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> ClientConfig:
        url = base_url or os.environ.get("RELAY_URL") or DEFAULT_URL
        key = api_key if api_key is not None else os.environ.get("RELAY_API_KEY", "")
        if not key:
            raise AuthenticationError(
                "no API key: pass api_key= or set RELAY_API_KEY", status=401, type="unauthorized"
            )
        return cls(url.rstrip("/"), key, timeout_s=timeout_s, retry=retry or RetryPolicy())

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "headers": {"Authorization": f"Bearer {self.api_key}", "User-Agent": "relay-client"},
            "timeout": httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 5.0)),
        }

    def stream_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.stream_read_timeout_s, connect=5.0, write=10.0, pool=10.0)


def describe(exc: BaseException) -> str:
    """A network error as a short phrase for a status line (no URL, no header)."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}"[:160] if text else name
