"""Finding 4: wrong keys were free.

12,000 distinct wrong keys each cost a call to state and a Postgres query,
unthrottled (a valid tenant's median latency went from 26 to 612 ms), and
past 10,000 entries the auth cache was cleared whole. Now failed
authentications are counted per client address and answered 429 past
`RELAY_AUTH_FAILURES_PER_MIN` (30) without asking state, while a valid key
from the same address keeps working (relay_core.auththrottle); the cache's
eviction is tested in libs/relay-core/tests/test_auth.py.

The attacker speaks as 203.0.113.7 through X-Forwarded-For, which this stack
believes from 127.0.0.1 (its trusted proxy), so the suite's own address is
never throttled; a gateway without trusted proxies shows a client cannot pick
its address that way.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from relay_devstack.stack import Stack
from tests.security.attacks import verify_calls, wrong_keys
from tests.security.conftest import admin_key

ATTACKER = "203.0.113.7"


async def test_a_burst_of_wrong_keys_is_throttled_while_a_valid_key_answers(
    security_stack: Stack,
) -> None:
    key = admin_key(security_stack)
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": ATTACKER}
    state_metrics = f"{security_stack.management_url('state')}/metrics"
    async with httpx.AsyncClient(base_url=security_stack.gateway_url, headers=headers) as valid:
        assert (await valid.get("/v1/runs", params={"limit": 1})).status_code == 200  # known
        before = await asyncio.to_thread(verify_calls, state_metrics)
        flood = asyncio.ensure_future(
            wrong_keys(security_stack.gateway_url, n=1000, concurrency=20, forwarded_for=ATTACKER)
        )
        latencies, statuses = [], []
        while not flood.done():
            started = time.monotonic()
            resp = await valid.get("/v1/runs", params={"limit": 1})
            latencies.append(time.monotonic() - started)
            statuses.append(resp.status_code)
            await asyncio.sleep(0.05)
        wrong = flood.result()
    verified = await asyncio.to_thread(verify_calls, state_metrics) - before
    assert wrong.get(429, 0) >= 900, wrong  # before the fix: 1,000 x 401
    assert wrong.get(401, 0) <= 60, wrong  # the burst of 30, and its refill
    assert verified <= 80, verified  # before the fix: one per wrong key
    assert statuses and set(statuses) == {200}, statuses
    assert max(latencies) < 1.0, sorted(latencies)[-5:]


async def test_a_throttled_answer_says_why_and_when(security_stack: Stack) -> None:
    address = f"203.0.113.{uuid.uuid4().int % 200 + 20}"
    await wrong_keys(security_stack.gateway_url, n=40, concurrency=1, forwarded_for=address)
    async with httpx.AsyncClient(base_url=security_stack.gateway_url) as client:
        resp = await client.get(
            "/v1/runs",
            headers={"Authorization": "Bearer rk_wrong", "X-Forwarded-For": address},
        )
    assert resp.status_code == 429
    assert resp.json()["error"]["reason"] == "auth_failures"
    assert int(resp.headers["Retry-After"]) >= 1


def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(security_stack: Stack) -> None:
    """A gateway trusting no proxy counts every wrong key against the peer
    (127.0.0.1), whatever X-Forwarded-For claims. It keeps its Redis state in a
    database of its own, so its throttle does not touch the other tests'."""
    base, _, _ = security_stack.redis_url.rpartition("/")
    name = security_stack.start_extra(
        "gateway", env={"RELAY_TRUSTED_PROXIES": "", "RELAY_REDIS_URL": f"{base}/9"}
    )
    statuses = []
    with httpx.Client(base_url=security_stack.url(name)) as client:
        for i in range(40):
            resp = client.get(
                "/v1/runs",
                headers={"Authorization": "Bearer rk_wrong", "X-Forwarded-For": f"198.18.0.{i}"},
            )
            statuses.append(resp.status_code)
    assert statuses.count(401) <= 31 and statuses.count(429) >= 9, statuses
