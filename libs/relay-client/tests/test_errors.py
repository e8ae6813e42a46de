"""Errors carry the API's type, message and reason; retries follow Retry-After."""

from __future__ import annotations

import httpx
import pytest

from relay_client.errors import (
    AuthenticationError,
    InvalidRequest,
    RateLimited,
    RelayError,
    ServiceUnavailable,
)
from relay_client.retry import Backoff, RetryPolicy, retryable


def response(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_the_api_error_body_becomes_the_exception() -> None:
    body = {
        "error": {"type": "unavailable", "message": "kill switch is on", "reason": "kill_switch"}
    }
    exc = RelayError.from_response(response(503, body))
    assert isinstance(exc, ServiceUnavailable)
    assert (exc.status, exc.type, exc.reason, str(exc)) == (
        503, "unavailable", "kill_switch", "kill switch is on",
    )  # fmt: skip
    assert not retryable(exc)  # retrying cannot turn the kill switch off


def test_429_carries_retry_after_and_is_retried() -> None:
    body = {"error": {"type": "rate_limited", "message": "slow down", "reason": "rate_limit"}}
    exc = RelayError.from_response(response(429, body, {"Retry-After": "3"}))
    assert isinstance(exc, RateLimited) and exc.retry_after_s == 3.0 and retryable(exc)
    assert Backoff(RetryPolicy(base_s=0.01)).failed(exc.retry_after_s) >= 3.0


@pytest.mark.parametrize(
    ("status", "kind"), [(401, AuthenticationError), (422, InvalidRequest), (413, InvalidRequest)]
)
def test_status_picks_the_class(status: int, kind: type[RelayError]) -> None:
    exc = RelayError.from_response(response(status, {"error": {"type": "x", "message": "m"}}))
    assert type(exc) is kind and not retryable(exc)


def test_a_body_that_is_not_the_api_shape_still_reads_clearly() -> None:
    exc = RelayError.from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert exc.status == 502 and "502" in str(exc) and retryable(exc)


def test_backoff_is_jittered_capped_and_gives_up_after_its_deadline() -> None:
    backoff = Backoff(RetryPolicy(base_s=0.5, cap_s=2.0, give_up_after_s=0.0))
    waits = [backoff.failed() for _ in range(8)]
    assert all(0 <= w <= 2.0 for w in waits) and len(set(waits)) > 1
    assert backoff.exhausted()
    backoff.reset()
    assert not backoff.exhausted() and backoff.failures == 0
