"""Finding 3: one tenant could take every interactive slot.

The default per-user limit (20 runs) exceeds the interactive pool (8 in
`make dev`): a tenant holding 12 detached long chats took all 8 slots, and
every other tenant's chat waited 10 s for a 429 `interactive_capacity`. Now a
tenant holds at most its share of the pool (half by default), and waiting
tenants are admitted in turn (relay_core.capacity; the turn order itself is
tested against Redis in libs/relay-core/tests/test_capacity.py).
"""

from __future__ import annotations

import asyncio

import httpx

from relay_devstack.harness import async_wait_for
from relay_devstack.stack import Stack
from tests.security.attacks import bearer, detached_chats, first_token_s, sim
from tests.security.conftest import admin_key

LONG_CHAT = sim("hold the slot", tokens=400, token_delay_ms=25)  # ~10 s


async def _pool(stack: Stack) -> tuple[int | None, int | None]:
    async with httpx.AsyncClient(timeout=5) as client:
        health = (await client.get(f"{stack.management_url('gateway')}/healthz")).json()
    return health["interactive_in_flight"], health["interactive_capacity"]


async def test_another_tenants_chat_starts_while_one_tenant_holds_long_chats(
    security_stack: Stack,
) -> None:
    hog, other = admin_key(security_stack), admin_key(security_stack)

    async def capacity_known() -> bool:
        return (await _pool(security_stack))[1] == 8

    await async_wait_for(capacity_known, timeout_s=15, what="the interactive runner's 8 slots")
    hogging = asyncio.ensure_future(
        detached_chats(security_stack.gateway_url, hog, LONG_CHAT, n=12)
    )
    try:

        async def hog_at_its_share() -> bool:
            return (await _pool(security_stack))[0] == 4

        await async_wait_for(hog_at_its_share, timeout_s=10, what="the hog holding 4 slots")
        waited = await first_token_s(security_stack.gateway_url, other, sim("hi", tokens=3))
        assert isinstance(waited, float), waited  # before the fix: 429 after 10 s
        assert waited < 2.0
        held = (await _pool(security_stack))[0]
        assert held is not None and held <= 5  # the hog never got past its half
        statuses = await hogging
        assert statuses == {200: 4, 429: 8}, statuses  # the rest waited their turn, in vain
    finally:
        hogging.cancel()
        await _cancel_all(security_stack, hog)


async def _cancel_all(stack: Stack, key: str) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=bearer(key)) as client:
        runs = (await client.get("/v1/runs", params={"limit": 100})).json()["runs"]
        for run in runs:
            if run["status"] in ("queued", "running"):
                await client.post(f"/v1/runs/{run['run_id']}/cancel")
