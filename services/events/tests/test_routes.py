"""`GET /v1/runs/{id}/events` over real HTTP: auth, ownership, resume, SSE shape."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from redis.asyncio import Redis

from relay_core import events as ev
from relay_core import keys
from relay_core.events import Event
from relay_core.state_client import StateClient

from .conftest import Stack, User, new_run

DEADLINE_S = 10.0


@dataclass(frozen=True)
class Got:
    id: str
    event: str
    data: dict[str, Any]


async def xadd(rc: Redis, run_id: str, event: Event) -> str:
    fields: dict[Any, Any] = ev.encode_fields(event)  # as redis-py's xadd takes them
    return str(await rc.xadd(keys.events(run_id), fields))


async def write_run(rc: Redis, run_id: str, n: int) -> list[str]:
    ids = [await xadd(rc, run_id, ev.start(run_id, 1))]
    ids += [await xadd(rc, run_id, ev.token(f"w{i} ", 0)) for i in range(n)]
    ids.append(await xadd(rc, run_id, ev.done("succeeded", 0.001)))
    return ids


async def read_stream(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    params: dict[str, str] | None = None,
) -> tuple[httpx.Response, list[Got]]:
    """Every event until the server closes the stream (which it must, after done)."""
    got: list[Got] = []
    async with (
        asyncio.timeout(DEADLINE_S),
        aconnect_sse(client, "GET", url, headers=headers, params=params) as source,
    ):
        assert source.response.status_code == 200, await source.response.aread()
        async for sse in source.aiter_sse():
            got.append(Got(sse.id, sse.event, json.loads(sse.data)))
    return source.response, got


def error_of(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()["error"]
    assert body["type"] and body["message"]
    return body


async def test_without_a_key_or_with_a_wrong_key_is_401(
    client: httpx.AsyncClient, state: StateClient, alice: User
) -> None:
    run = await new_run(state, alice)
    url = f"/v1/runs/{run.run_id}/events"
    assert error_of(await client.get(url), 401)["type"] == "unauthorized"
    wrong = {"Authorization": "Bearer rk_not-a-real-key"}
    assert error_of(await client.get(url, headers=wrong), 401)["type"] == "unauthorized"


async def test_another_users_run_and_unknown_ids_are_404(
    client: httpx.AsyncClient, state: StateClient, alice: User, bob: User
) -> None:
    run = await new_run(state, alice)
    error_of(await client.get(f"/v1/runs/{run.run_id}/events", headers=bob.auth), 404)
    error_of(await client.get("/v1/runs/run_00000000000000000000000000000000/events",
                              headers=alice.auth), 404)  # fmt: skip
    error_of(await client.get("/v1/runs/no%20such%20id!/events", headers=alice.auth), 404)


async def test_malformed_last_event_id_is_400_before_streaming(
    client: httpx.AsyncClient, state: StateClient, alice: User
) -> None:
    run = await new_run(state, alice)
    url = f"/v1/runs/{run.run_id}/events"
    for bad in ("banana", "12-ab", "1-2-3", "99999999999999999999999-0"):
        headers = {**alice.auth, "Last-Event-ID": bad}
        assert error_of(await client.get(url, headers=headers), 400)["type"] == "invalid_request"
        resp = await client.get(url, headers=alice.auth, params={"last_event_id": bad})
        error_of(resp, 400)


async def test_replay_of_a_finished_run_has_sse_headers_and_ends_after_done(
    client: httpx.AsyncClient, state: StateClient, alice: User, rc: Redis
) -> None:
    run = await new_run(state, alice)
    ids = await write_run(rc, run.run_id, 5)
    resp, got = await read_stream(client, f"/v1/runs/{run.run_id}/events", alice.auth)
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers["x-accel-buffering"] == "no"
    assert [g.id for g in got] == ids
    assert [g.event for g in got] == ["start"] + ["token"] * 5 + ["done"]
    assert got[-1].data == {"status": "succeeded", "cost_usd": 0.001}


async def test_live_events_stream_as_they_are_written(
    client: httpx.AsyncClient, state: StateClient, alice: User, rc: Redis
) -> None:
    run = await new_run(state, alice)
    reader = asyncio.create_task(read_stream(client, f"/v1/runs/{run.run_id}/events", alice.auth))
    await asyncio.sleep(0.2)  # let it subscribe; correctness does not depend on it
    ids = await write_run(rc, run.run_id, 20)
    _, got = await reader
    assert [g.id for g in got] == ids


async def test_resume_with_the_header_and_with_the_query_parameter(
    client: httpx.AsyncClient, state: StateClient, alice: User, rc: Redis
) -> None:
    run = await new_run(state, alice)
    ids = await write_run(rc, run.run_id, 8)
    url = f"/v1/runs/{run.run_id}/events"
    _, by_header = await read_stream(client, url, {**alice.auth, "Last-Event-ID": ids[4]})
    assert [g.id for g in by_header] == ids[5:]
    _, by_query = await read_stream(client, url, alice.auth, params={"last_event_id": ids[2]})
    assert [g.id for g in by_query] == ids[3:]


async def test_expired_events_of_a_finished_run_resync_to_the_transcript(
    client: httpx.AsyncClient, state: StateClient, alice: User, rc: Redis
) -> None:
    run = await new_run(state, alice)
    cancelled = await state.cancel_run(run.run_id, user_id=alice.user_id)
    assert cancelled.status == "cancelled"
    await rc.delete(keys.events(run.run_id))  # what retention does after its TTL
    _, got = await read_stream(client, f"/v1/runs/{run.run_id}/events", alice.auth)
    assert [g.event for g in got] == ["resync", "done"]
    assert got[0].data == {
        "reason": "events_expired",
        "transcript_url": f"/v1/conversations/{run.conversation_id}/messages",
    }
    assert got[1].data["status"] == "cancelled"


async def test_keepalive_comments_while_nothing_happens(
    client: httpx.AsyncClient, state: StateClient, alice: User
) -> None:
    run = await new_run(state, alice)
    async with (
        asyncio.timeout(DEADLINE_S),
        client.stream("GET", f"/v1/runs/{run.run_id}/events", headers=alice.auth) as resp,
    ):
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith(":"):
                break  # RELAY_KEEPALIVE_S=0.5 in this stack


async def test_keepalive_only_on_a_stream_that_sent_nothing_for_the_interval(
    client: httpx.AsyncClient, state: StateClient, alice: User, rc: Redis
) -> None:
    """A stream carrying an event every 0.1 s (keep-alive 0.5 s here) never needs
    a keep-alive comment; once it goes quiet, the comments come back."""
    run = await new_run(state, alice)
    busy_s = 2.0
    lines: list[tuple[float, str]] = []  # (seconds since the first event, line)

    async def write() -> None:
        await xadd(rc, run.run_id, ev.start(run.run_id, 1))
        for i in range(int(busy_s / 0.1)):
            await asyncio.sleep(0.1)
            await xadd(rc, run.run_id, ev.token(f"t{i}", 0))

    async with (
        asyncio.timeout(DEADLINE_S),
        client.stream("GET", f"/v1/runs/{run.run_id}/events", headers=alice.auth) as resp,
    ):
        assert resp.status_code == 200
        writer = asyncio.create_task(write())
        t0: float | None = None
        async for line in resp.aiter_lines():
            if t0 is None and line.startswith("event: start"):
                t0 = time.monotonic()
            if t0 is not None and line:
                lines.append((time.monotonic() - t0, line))
            if line.startswith(":") and t0 is not None and time.monotonic() - t0 > busy_s:
                break  # quiet again: the keep-alive is back
        await writer
    assert sum(1 for _, line in lines if line.startswith("event: token")) == int(busy_s / 0.1)
    busy = [line for at, line in lines if at < busy_s - 0.2 and line.startswith(":")]
    assert busy == [], f"keep-alives on a busy stream: {lines}"


async def metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


async def test_disconnect_removes_the_subscription_promptly(
    stack: Stack, state: StateClient, alice: User
) -> None:
    run = await new_run(state, alice)
    async with httpx.AsyncClient(base_url=stack.management_url("events"), timeout=5.0) as probe:
        before = await metric(probe, "relay_events_subscribers")
        async with httpx.AsyncClient(base_url=stack.events_url, timeout=5.0) as viewer:
            async with viewer.stream(
                "GET", f"/v1/runs/{run.run_id}/events", headers=alice.auth
            ) as resp:
                assert resp.status_code == 200
                assert await metric(probe, "relay_events_subscribers") == before + 1
        deadline = time.monotonic() + 5.0
        while await metric(probe, "relay_events_subscribers") != before:
            assert time.monotonic() < deadline, "subscription not removed after disconnect"
            await asyncio.sleep(0.05)


async def test_health_readiness_and_metrics(
    client: httpx.AsyncClient, management: httpx.AsyncClient
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}  # the public port's
    assert (await client.get("/metrics")).status_code == 404
    assert (await management.get("/healthz")).json()["status"] == "ok"
    assert (await management.get("/livez")).json() == {"status": "ok"}
    ready = await management.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"redis": "ok", "state": "ok"}
    for name in (
        "relay_events_subscribers",
        "relay_events_delivered_total",
        "relay_events_subscribers_dropped_total",
        "relay_events_redis_connections",
        "relay_events_rate_limited_total",
        "relay_events_streams_refused_total",
    ):
        await metric(management, name)
    assert 1 <= await metric(management, "relay_events_redis_connections") <= 16
