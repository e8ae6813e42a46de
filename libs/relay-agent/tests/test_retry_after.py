"""Retry-After from a provider: parsed in seconds, capped, never trusted blindly."""

from __future__ import annotations

import httpx
import pytest

from relay_agent.providers.base import MAX_RETRY_AFTER_S, retry_after_s


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("0", 0.0), ("7200", MAX_RETRY_AFTER_S)],
)
def test_seconds_are_honoured_up_to_the_cap(value: str, expected: float) -> None:
    assert retry_after_s(httpx.Headers({"Retry-After": value})) == expected


@pytest.mark.parametrize("value", ["Wed, 21 Oct 2026 07:28:00 GMT", "soon", "-4", ""])
def test_dates_and_garbage_are_ignored(value: str) -> None:
    assert retry_after_s(httpx.Headers({"Retry-After": value})) is None


def test_absent_header_or_no_headers() -> None:
    assert retry_after_s(httpx.Headers({})) is None
    assert retry_after_s(None) is None
