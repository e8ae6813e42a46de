"""`POST /v1/chat/stream` end to end: the real gateway process, state, an
interactive runner, and modelsim, with real client disconnects over TCP.

The gateway runs as a process here (not in-process) because what is tested is
what a socket does: a client that closes its connection mid-stream. The
processes are part of a relay_devstack Stack beside the shared state service.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from relay_core import keys
from relay_core.config import DEV_INTERNAL_TOKEN

from .conftest import GatewayClient


@pytest.fixture(scope="module")
def stack(state_service: Any, gw_redis_url: str, stack_factory: Any) -> dict[str, str]:
    """modelsim, one interactive runner and the gateway, as processes."""
    running = stack_factory(
        {
            "runner-interactive": {
                "RELAY_CONSUMER_NAME": f"gw-test-{uuid.uuid4().hex[:6]}",
                "RELAY_BLOCK_MS": "200",
            },
            "gateway": {
                "RELAY_EVENTS_PUBLIC_URL": "http://events.example",
                "RELAY_KEEPALIVE_S": "1",
            },
        },
        services=("modelsim", "runner-interactive", "gateway"),
        redis_url=gw_redis_url,
        state_url=state_service.url,
        internal_token=DEV_INTERNAL_TOKEN,
        dev_keys=False,
    )
    return {
        "gateway": running.gateway_url,
        "management": running.management_url("gateway"),
        "modelsim": running.modelsim_url,
    }


@pytest.fixture
async def client(stack: dict[str, str]) -> AsyncIterator[GatewayClient]:
    """The gateway's public port; its management port as `client.management`."""
    async with (
        GatewayClient(base_url=stack["gateway"], timeout=30) as http,
        httpx.AsyncClient(base_url=stack["management"], timeout=30) as manage,
    ):
        http.management = manage
        yield http


def sim(text: str, **directive: Any) -> str:
    return f"{text}\n#sim {json.dumps(directive)}"


async def read_stream(
    client: GatewayClient, auth: dict[str, str], body: dict[str, Any], stop_after: int = 0
) -> tuple[httpx.Response, list[tuple[str, dict[str, Any]]]]:
    """POST and read events until the stream ends, or close after `stop_after` tokens."""
    received: list[tuple[str, dict[str, Any]]] = []
    tokens = 0
    async with aconnect_sse(client, "POST", "/v1/chat/stream", json=body, headers=auth) as source:
        response = source.response
        if response.status_code != 200:
            await response.aread()
            return response, received
        async for sse in source.aiter_sse():
            received.append((sse.event, json.loads(sse.data)))
            tokens += sse.event == "token"
            if stop_after and tokens >= stop_after:
                break  # leaving the block closes the connection mid-stream
    return response, received


async def modelsim_tag(stack: dict[str, str], tag: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack["modelsim"]) as http:
        resp = await http.get("/admin/stats", params={"tag": tag})
    body: dict[str, Any] = resp.json()
    return body


async def test_interactive_run_streams_tokens_and_tools_to_done(
    client: GatewayClient, new_user: Any
) -> None:
    alice = await new_user()
    message = sim("add", tokens=6, tools=[{"name": "calculator", "args": {"expression": "2+3"}}])
    response, received = await read_stream(client, alice.auth, {"message": message})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    run_id = response.headers["relay-run-id"]
    assert response.headers["relay-events-url"] == f"http://events.example/v1/runs/{run_id}/events"
    types = [t for t, _ in received]
    assert types[0] == "start" and types[-1] == "done", types
    assert {"token", "tool_start", "tool_end", "usage"} <= set(types), types
    assert received[-1][1]["status"] == "succeeded"
    tool_end = next(d for t, d in received if t == "tool_end")
    assert tool_end["name"] == "calculator" and tool_end["ok"] is True

    run = (await client.get(f"/v1/runs/{run_id}", headers=alice.auth)).json()
    assert run["status"] == "succeeded"
    conv = response.headers["relay-conversation-id"]
    transcript = (await client.get(f"/v1/conversations/{conv}/messages", headers=alice.auth)).json()
    answer = transcript["messages"][-1]
    assert answer["role"] == "assistant"
    final_step = max(d["step"] for t, d in received if t == "token")
    streamed = "".join(d["text"] for t, d in received if t == "token" and d["step"] == final_step)
    assert streamed == answer["text"]
    assert "5" in answer["text"]  # the calculator's result made it into the answer


async def test_disconnect_cancels_the_run_and_closes_the_model_stream(
    client: GatewayClient, new_user: Any, stack: dict[str, str], poll: Any
) -> None:
    alice = await new_user()
    tag = f"disc-{uuid.uuid4().hex[:8]}"
    body = {"message": sim("long", tokens=2000, token_delay_ms=10, tag=tag)}
    response, received = await read_stream(client, alice.auth, body, stop_after=3)
    assert response.status_code == 200
    assert "done" not in [t for t, _ in received]  # left mid-stream
    run_id = response.headers["relay-run-id"]

    async def cancelled() -> bool:
        run = (await client.get(f"/v1/runs/{run_id}", headers=alice.auth)).json()
        return bool(run["status"] == "cancelled")

    await poll(cancelled, timeout_s=10, what="the abandoned run to be cancelled")

    async def model_stream_closed() -> bool:
        stats = await modelsim_tag(stack, tag)
        return bool(stats["streams_closed_early"] == 1 and stats["streams_open"] == 0)

    await poll(model_stream_closed, timeout_s=10, what="modelsim to see the stream closed early")
    assert (await modelsim_tag(stack, tag))["tokens_generated"] < 2000


async def test_detached_run_finishes_after_the_client_leaves(
    client: GatewayClient, new_user: Any, redis: Any, poll: Any
) -> None:
    alice = await new_user()
    body = {"message": sim("keep going", tokens=60, token_delay_ms=10), "detach": True}
    response, _ = await read_stream(client, alice.auth, body, stop_after=2)
    run_id = response.headers["relay-run-id"]

    async def succeeded() -> bool:
        run = (await client.get(f"/v1/runs/{run_id}", headers=alice.auth)).json()
        return bool(run["status"] == "succeeded")

    await poll(succeeded, timeout_s=15, what="the detached run to finish")
    entries = await redis.xrange(keys.events(run_id))
    assert entries[-1][1]["event"] == "done"  # all there to rejoin on events_url


async def test_streams_open_is_counted(client: GatewayClient, new_user: Any, poll: Any) -> None:
    alice = await new_user()
    body = {"message": sim("slow", tokens=200, token_delay_ms=20)}
    async with aconnect_sse(client, "POST", "/v1/chat/stream", json=body, headers=alice.auth) as s:
        events = s.aiter_sse()  # held, so the stream stays open until the block ends
        while (await anext(events)).event != "token":
            pass
        health = (await client.management.get("/healthz")).json()
        assert health["streams_open"] == 1
        assert "relay_gateway_streams_open 1.0" in (await client.management.get("/metrics")).text

    async def closed() -> bool:
        return bool((await client.management.get("/healthz")).json()["streams_open"] == 0)

    await poll(closed, timeout_s=5, what="the stream gauge to go back to 0")


async def test_refusals_come_before_the_stream(
    client: GatewayClient, new_user: Any, redis: Any
) -> None:
    alice, mallory = await new_user(), await new_user()
    response, _ = await read_stream(client, alice.auth, {"message": sim("x", tokens=1)})
    bad = {"message": "x", "conversation_id": response.headers["relay-conversation-id"]}
    resp = await client.post("/v1/chat/stream", json=bad, headers=mallory.auth)
    assert resp.status_code == 404 and resp.json()["error"]["message"] == "conversation not found"
    assert (await client.post("/v1/chat/stream", json={"message": "x"})).status_code == 401
    await redis.set(keys.KILL_SWITCH, "1")
    try:
        resp = await client.post("/v1/chat/stream", json={"message": "x"}, headers=alice.auth)
        assert resp.status_code == 503 and resp.json()["error"]["reason"] == "kill_switch"
    finally:
        await redis.delete(keys.KILL_SWITCH)
