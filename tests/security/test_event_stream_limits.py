"""Finding 2: the events service applied no rate limit and no stream cap.

A key limited to 30 requests a minute (the gateway answered 429 after 30)
opened 300 streams on the events service in half a second; another opened
1,000 streams of one run. Now opening a stream counts against the key's rate
limit (the gateway's limiter: one limit for both services), and the streams a
key holds open at once are capped (`max_streams`), 429 with `Retry-After`.
"""

from __future__ import annotations

import asyncio

import httpx

from relay_devstack.harness import async_wait_for
from relay_devstack.stack import Stack
from tests.security.attacks import bearer, finished_run, open_streams, sim
from tests.security.conftest import admin_key


async def test_stream_opens_count_against_the_keys_rate_limit(security_stack: Stack) -> None:
    key = admin_key(security_stack, rate_limit_per_min=30)
    # The run is the key's own: one request of its 30.
    run_id = await asyncio.to_thread(finished_run, security_stack.gateway_url, key, tokens=2)
    opened = await open_streams(security_stack.events_url, key, run_id, n=150)
    statuses, refusals = opened["statuses"], opened["refusals"]
    # The burst is 30 requests, the submit and the status polls took some.
    assert statuses.get(200, 0) <= 30, opened
    assert statuses.get(429, 0) >= 120, opened
    assert set(refusals) == {"rate_limit"}, opened
    async with httpx.AsyncClient(headers=bearer(key)) as client:
        refused = await client.get(f"{security_stack.events_url}/v1/runs/{run_id}/events")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    # The same limiter: the gateway refuses the key too now.
    async with httpx.AsyncClient(headers=bearer(key)) as client:
        gateway = await client.get(f"{security_stack.gateway_url}/v1/runs/{run_id}")
    assert gateway.status_code == 429
    assert gateway.json()["error"]["reason"] == "rate_limit"


async def test_a_keys_open_streams_are_capped(security_stack: Stack) -> None:
    key = admin_key(security_stack, max_streams=5)
    async with httpx.AsyncClient(timeout=60, headers=bearer(key)) as client:
        run = await client.post(
            f"{security_stack.gateway_url}/v1/runs",
            json={"message": sim("long", tokens=200, token_delay_ms=100)},  # ~20 s
        )
        url = f"{security_stack.events_url}/v1/runs/{run.json()['run_id']}/events"
        streams = [client.stream("GET", url) for _ in range(5)]
        opened = [await s.__aenter__() for s in streams]
        assert [r.status_code for r in opened] == [200] * 5
        sixth = await client.get(url)
        assert sixth.status_code == 429, sixth.text
        assert sixth.json()["error"]["reason"] == "concurrent_streams"
        assert int(sixth.headers["Retry-After"]) >= 1
        await streams[0].__aexit__(None, None, None)  # one ends: its place goes back

        async def one_more() -> bool:
            async with client.stream("GET", url) as again:
                return again.status_code == 200

        await async_wait_for(one_more, timeout_s=5, what="a place after a stream ended")
        for stream in streams[1:]:
            await stream.__aexit__(None, None, None)
        await client.post(f"{security_stack.gateway_url}/v1/runs/{run.json()['run_id']}/cancel")
