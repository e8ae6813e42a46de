"""The `relay-events` process: alive without its dependencies, recovers when they
return, and stops promptly on SIGTERM even with streams open."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from relay_core import events as ev
from relay_core import keys
from relay_core.redis import create_redis
from relay_core.state_client import StateClient
from relay_devstack.procs import free_port
from relay_devstack.servers import RedisServer

from .conftest import Stack, User, new_run, spawn_events, wait_healthy


async def poll(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_healthz_without_dependencies_then_ready_when_they_return(
    stack: Stack, tmp_path: Path
) -> None:
    redis_port = free_port()
    state_url = f"http://127.0.0.1:{free_port()}"
    events, url, mgmt = spawn_events(
        stack,
        RELAY_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        RELAY_STATE_URL=state_url,
        RELAY_DEPENDENCY_TIMEOUT_S="0.5",
    )
    redis = RedisServer(tmp_path / "redis", port=redis_port)
    try:
        wait_healthy(events, url)
        async with (
            httpx.AsyncClient(base_url=url, timeout=5.0) as client,
            httpx.AsyncClient(base_url=mgmt, timeout=5.0) as management,
        ):
            ready = await management.get("/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert body["error"]["reason"] == "dependencies_unavailable"
            assert body["checks"] == {"redis": "down", "state": "down"}
            stream = await client.get(
                "/v1/runs/run_x/events", headers={"Authorization": "Bearer rk_whatever"}
            )
            assert stream.status_code == 503
            assert stream.json()["error"]["type"] == "unavailable"

            redis.start()

            async def redis_back() -> bool:
                resp = await management.get("/readyz")
                return bool(resp.json()["checks"]["redis"] == "ok")

            await poll(redis_back, 10.0, "readyz to see Redis again")
            ready = await management.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"]["reason"] == "state_unavailable"

            async def reader_back() -> bool:
                text = (await management.get("/metrics")).text
                return "relay_events_reader_connected 1.0" in text

            await poll(reader_back, 10.0, "the stream reader to reconnect")
    finally:
        events.stop()
        redis.stop()


async def test_sigterm_stops_it_within_seconds_with_a_stream_open(
    stack: Stack, state: StateClient, alice: User
) -> None:
    events, url, _ = spawn_events(stack)
    try:
        wait_healthy(events, url)
        run = await new_run(state, alice)
        async with (
            httpx.AsyncClient(base_url=url, timeout=10.0) as client,
            client.stream("GET", f"/v1/runs/{run.run_id}/events", headers=alice.auth) as resp,
        ):
            assert resp.status_code == 200
            started = time.monotonic()
            events.signal(signal.SIGTERM)
            async with asyncio.timeout(8.0):  # the stream ends cleanly (a last chunk)
                async for _ in resp.aiter_bytes():
                    pass
        await poll(lambda: _exited(events), 8.0, "relay-events to exit")
        assert time.monotonic() - started < 8.0
        # uvicorn re-raises the signal once it has shut down gracefully
        assert events.proc.returncode in (0, -signal.SIGTERM), events.tail()
        assert "without completing response" not in events.tail(200)
    finally:
        events.stop()


async def _exited(child) -> bool:
    return not child.alive()


async def test_a_client_that_stops_reading_is_dropped_then_disconnected(
    stack: Stack, state: StateClient, alice: User
) -> None:
    """It neither holds events in memory nor keeps its connection open."""
    events, url, mgmt = spawn_events(
        stack,
        RELAY_KEEPALIVE_S="0.3",
        RELAY_SEND_TIMEOUT_S="1",
        RELAY_SUBSCRIBER_BUFFER="200",
        RELAY_LOG_LEVEL="INFO",
    )
    rc = create_redis(stack.redis_url)
    sock = socket.socket()
    try:
        wait_healthy(events, url)
        run = await new_run(state, alice)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        request = (
            f"GET /v1/runs/{run.run_id}/events HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {alice.key}\r\n\r\n"
        )
        sock.sendall(request.encode())
        head = sock.recv(1024)
        assert head.startswith(b"HTTP/1.1 200"), head
        big: dict[Any, Any] = ev.encode_fields(ev.token("x" * 4000, 0))  # as xadd takes them
        for _ in range(40):  # ~16 MB: far past the socket buffers and the hub's 200 events
            async with rc.pipeline(transaction=False) as pipe:
                for _ in range(100):
                    pipe.xadd(keys.events(run.run_id), big)
                await pipe.execute()

        async with httpx.AsyncClient(base_url=mgmt, timeout=5.0) as probe:

            async def dropped() -> bool:
                text = (await probe.get("/metrics")).text
                return "relay_events_subscribers_dropped_total 1.0" in text

            await poll(dropped, 10.0, "the hub to drop the stalled subscriber")
        # Two ways the stream ends, depending on whether the socket buffers were
        # already full when the hub dropped it: the send times out ("client
        # stopped reading"), or the stream is ended at once ("fell more than").
        await poll(
            lambda: _logged_any(events, ("client stopped reading", "fell more than")),
            30.0,
            "the stream to close",
        )
    finally:
        sock.close()
        await rc.aclose()
        events.stop()


async def _logged_any(child, texts: tuple[str, ...]) -> bool:
    log = child.log_path.read_text(errors="replace")
    return any(text in log for text in texts)
