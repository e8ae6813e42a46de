"""Clients of the running stack for the end-to-end tests: two users, HTTP only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest


@pytest.fixture(scope="module")
def stack_urls(stack: Any) -> dict[str, str]:
    return {"gateway": stack.gateway_url, "events": stack.events_url}


def _client(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30.0)


@pytest.fixture(scope="module")
def user_key(stack: Any) -> str:
    return str(stack.new_key(f"user-{uuid.uuid4().hex[:8]}"))


@pytest.fixture(scope="module")
def other_key(stack: Any) -> str:
    return str(stack.new_key(f"other-{uuid.uuid4().hex[:8]}"))


@pytest.fixture(scope="module")
def user_client(stack_urls: dict[str, str], user_key: str) -> Iterator[httpx.Client]:
    with _client(stack_urls["gateway"], user_key) as client:
        yield client


@pytest.fixture(scope="module")
def other_client(stack_urls: dict[str, str], other_key: str) -> Iterator[httpx.Client]:
    with _client(stack_urls["gateway"], other_key) as client:
        yield client
