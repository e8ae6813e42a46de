"""The stack the security regression suite attacks (one per session).

The issue-17 findings, each reproduced at a scale CI can afford and checked
fixed: one test module per finding, the attacks themselves in `attacks.py`
(also a CLI that measured them before and after the fixes).

The stack is `make dev`'s code path with short deadlines, so a slow client is
closed within a second or two instead of ten, and with 127.0.0.1 as a trusted
proxy, so a test can speak for another client address with X-Forwarded-For
(an attack from 203.0.113.7 does not throttle the suite's own address).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from relay_devstack.harness import running_stack
from relay_devstack.stack import Stack

DEADLINE_S = 1.0
FRONT = {
    "RELAY_HTTP_HEADER_TIMEOUT_S": str(DEADLINE_S),
    "RELAY_HTTP_BODY_TIMEOUT_S": str(DEADLINE_S),
    "RELAY_HTTP_KEEPALIVE_S": "1",
    "RELAY_TRUSTED_PROXIES": "127.0.0.1",
}


@pytest.fixture(scope="session")
def security_stack() -> Iterator[Stack]:
    with running_stack({"gateway": FRONT, "events": FRONT}) as running:
        yield running


def admin_key(stack: Stack, **limits: Any) -> str:
    """A new user's key created through the admin API, with `limits`."""
    import uuid

    body = {"user_id": f"sec-{uuid.uuid4().hex[:10]}", "name": "security", **limits}
    resp = httpx.post(
        f"{stack.gateway_url}/v1/admin/keys",
        json=body,
        headers={"Authorization": f"Bearer {stack.admin_key}"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["api_key"])


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] not in (name, f"{name}_total"):
            continue
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total
