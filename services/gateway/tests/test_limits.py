"""Body limits: 413 before anything parses the body, 415 for a body that is not JSON.

These run the real gateway with state and Redis down: the limits answer
before authentication, so no dependency is needed to see them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay_devstack.procs import free_port
from relay_gateway.limits import is_json_content_type

JSON = {"content-type": "application/json"}


@pytest.fixture
async def gw(make_gateway: Any) -> AsyncIterator[Any]:
    dead = f"http://127.0.0.1:{free_port()}"
    async with make_gateway(
        dead, redis_url=f"redis://127.0.0.1:{free_port()}/0", max_body_bytes=4096
    ) as client:
        yield client


async def test_declared_length_over_limit_is_413_without_parsing(gw: Any) -> None:
    # Malformed JSON, so a 400 would mean it was parsed before the size check.
    resp = await gw.post("/v1/runs", content=b"{" * 5000, headers=JSON)
    assert resp.status_code == 413
    assert resp.json()["error"]["type"] == "payload_too_large"
    assert "4096" in resp.json()["error"]["message"]


async def test_streamed_body_over_limit_is_413_and_not_read_to_the_end(gw: Any) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):  # 1 MB announced by no Content-Length
            sent += 1
            yield b"x" * 1024

    resp = await gw.post("/v1/runs", content=chunks(), headers=JSON)
    assert resp.status_code == 413
    assert resp.json()["error"]["type"] == "payload_too_large"
    assert sent < 10, f"the gateway kept reading {sent} KiB past a 4 KiB limit"


async def test_streamed_body_under_limit_reaches_the_parser(gw: Any) -> None:
    async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    bad = await gw.post("/v1/runs", content=chunks(b'{"message": ', b'"hi"'), headers=JSON)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_json"
    good = await gw.post("/v1/runs", content=chunks(b'{"message": ', b'"hi"}'), headers=JSON)
    assert good.status_code == 401  # parsed, then refused for the missing key


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_body_that_is_not_json_is_415(gw: Any, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    resp = await gw.post("/v1/runs", content=b'{"message": "hi"}', headers=headers)
    if content_type is None:  # httpx sends no Content-Type for raw bytes
        assert "content-type" not in resp.request.headers
    assert resp.status_code == 415
    assert "application/json" in resp.json()["error"]["message"]


async def test_bodyless_post_needs_no_content_type(gw: Any) -> None:
    resp = await gw.post("/v1/runs/run_1/cancel")
    assert resp.status_code == 401  # reached auth: no 415 for an empty body


async def test_malformed_content_length_is_400(gw: Any) -> None:
    resp = await gw.post("/v1/runs", content=b"{}", headers={**JSON, "content-length": "abc"})
    assert resp.status_code == 400


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("text/json", False),
        ("text/plain", False),
        ("", False),
        (None, False),
    ],
)
def test_is_json_content_type(value: str | None, ok: bool) -> None:
    assert is_json_content_type(value) is ok
