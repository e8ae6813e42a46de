"""Finding 1: no header, body or idle deadline, no connection cap.

The probe held 2,000 connections forever on the gateway and the events
service (a request line, then a header every 5 s; nothing at all; a POST body
trickling a byte every 5 s), and 20,000 idle connections used up the
gateway's file descriptors until /healthz failed. Now (relay_core.connguard)
each kind is closed at its deadline while a normal request on the same port
answers, an SSE stream outlives every deadline, and past the connection cap a
new connection is closed at once and counted, while the management port (the
liveness probe's) keeps answering.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from relay_devstack.harness import wait_for
from relay_devstack.stack import Stack
from tests.security.attacks import bearer, flood, sim, slow_connections
from tests.security.conftest import DEADLINE_S, admin_key, metric

N = 100  # connections of each kind per port
SLACK_S = 2.0  # scheduling on a shared 2-core machine
PORTS = ("gateway", "events")


def port_of(stack: Stack, name: str) -> int:
    return stack.specs[name].port


async def _healthz_while(url: str, attack: asyncio.Future[Any]) -> list[int]:
    """Statuses of a normal request on the attacked port, sent while the attack runs."""
    statuses = []
    async with httpx.AsyncClient(timeout=5) as client:
        while not attack.done():
            statuses.append((await client.get(url)).status_code)
            await asyncio.sleep(0.2)
    return statuses


@pytest.mark.parametrize("kind", ["header", "body", "idle"])
@pytest.mark.parametrize("service", PORTS)
async def test_slow_connections_are_closed_at_their_deadline(
    security_stack: Stack, service: str, kind: str
) -> None:
    port = port_of(security_stack, service)
    attack = asyncio.ensure_future(
        slow_connections(port, kind=kind, n=N, interval_s=0.3, duration_s=DEADLINE_S + 8)
    )
    statuses = await _healthz_while(f"{security_stack.url(service)}/healthz", attack)
    held = attack.result()
    assert held.opened == N, held.summary()
    # Before the fix: 0 closed. The body deadline grows by 1 s per 500 bytes
    # received; these send a byte every 0.3 s, which earns nothing.
    assert held.closed_within(DEADLINE_S + SLACK_S) == N, held.summary()
    assert statuses and set(statuses) == {200}, statuses


async def test_a_body_sent_at_a_sane_rate_is_not_cut(security_stack: Stack) -> None:
    """2 KB over ~2 s (1,000 B/s, above the 500 B/s minimum) passes the 1 s deadline."""
    key = admin_key(security_stack)

    async def body() -> AsyncIterator[bytes]:
        chunk = b'{"message": "' + b"x" * 196
        yield chunk
        for _ in range(9):
            await asyncio.sleep(0.2)
            yield b"x" * 200
        yield b'"}'

    async with httpx.AsyncClient(timeout=10, headers=bearer(key)) as client:
        resp = await client.post(
            f"{security_stack.gateway_url}/v1/runs",
            content=body(),
            headers={"Content-Type": "application/json"},
        )
    assert resp.status_code == 202, resp.text


async def test_an_open_stream_outlives_every_deadline(security_stack: Stack) -> None:
    """A run's stream lasting 5 s (20 tokens, 250 ms apart) reaches `done`."""
    key = admin_key(security_stack)
    async with httpx.AsyncClient(timeout=30, headers=bearer(key)) as client:
        resp = await client.post(
            f"{security_stack.gateway_url}/v1/runs",
            json={"message": sim("slow", tokens=20, token_delay_ms=250)},
        )
        url = f"{security_stack.events_url}/v1/runs/{resp.json()['run_id']}/events"
        started = time.monotonic()
        async with client.stream("GET", url) as stream:
            assert stream.status_code == 200
            events = [line async for line in stream.aiter_lines() if line.startswith("event:")]
    assert events[-1] == "event: done"
    assert time.monotonic() - started > 3 * DEADLINE_S  # it lived past every deadline


def test_past_the_connection_cap_new_connections_are_closed_and_counted(
    security_stack: Stack,
) -> None:
    """A gateway capped at 50 connections, flooded with 150 idle ones."""
    name = security_stack.start_extra("gateway", env={"RELAY_HTTP_MAX_CONNECTIONS": "50"})
    mgmt = security_stack.management_url(name)
    before = metric(httpx.get(f"{mgmt}/metrics").text, "relay_http_connections_refused")

    async def attack() -> tuple[object, list[int]]:
        flooding = asyncio.ensure_future(flood(port_of(security_stack, name), n=150, settle_s=1))
        live = await _healthz_while(f"{mgmt}/livez", flooding)  # the liveness probe's port
        return flooding.result(), live

    held, live = asyncio.run(attack())
    summary = held.summary()  # type: ignore[attr-defined]
    assert summary["opened"] == 150, summary
    assert summary["closed_by_server"] >= 100 - 5, summary  # the cap, give or take probes
    assert held.closed_within(1.0) >= 95, summary  # type: ignore[attr-defined]
    assert summary["held_at_end"] <= 50, summary
    assert live and set(live) == {200}, live

    def counted() -> float:
        text = httpx.get(f"{mgmt}/metrics").text
        return metric(text, "relay_http_connections_refused", server="public") - before

    assert wait_for(lambda: counted() >= 95, timeout_s=5, what="refusals counted")
