"""Stats, faults, reset and health, observed through the admin endpoints."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

COUNTERS = {
    "streams_open",
    "streams_total",
    "requests_total",
    "tokens_generated",
    "streams_closed_early",
    "errors_injected",
}


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


def sim_line(**directive: Any) -> str:
    return "#sim " + json.dumps(directive)


@pytest.fixture
async def admin(sim: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        yield http
        await http.put("/admin/faults", json={})  # leave no fault behind


async def test_healthz_and_json_404(admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/healthz")).json() == {"status": "ok"}
    missing = await admin.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Not Found"


async def test_stats_by_tag_and_model(
    sim: Any, claude: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI, tag: str
) -> None:
    line = sim_line(tokens=7, tag=tag)
    await claude.messages.create(model="sim-stats-a", max_tokens=50, messages=user(line))
    async with claude.messages.stream(model="sim-stats-a", max_tokens=50, messages=user(line)) as s:
        await s.get_final_message()
    stream = await oai.chat.completions.create(
        model="sim-stats-b", messages=user(line), stream=True
    )
    _ = [chunk async for chunk in stream]
    mine = await sim.stats(tag)
    assert set(mine) == COUNTERS
    assert mine["requests_total"] == 3
    assert mine["streams_total"] == 2
    assert mine["tokens_generated"] == 21
    assert mine["streams_open"] == mine["streams_closed_early"] == mine["errors_injected"] == 0
    everything = await sim.stats()
    assert COUNTERS <= set(everything)
    assert everything["by_tag"][tag] == mine
    assert everything["by_model"]["sim-stats-a"]["requests_total"] >= 2
    assert set(everything["by_model"]["sim-stats-b"]) == COUNTERS
    assert await sim.stats("never-used") == dict.fromkeys(COUNTERS, 0)


async def test_errors_injected_are_counted(
    sim: Any, claude: anthropic.AsyncAnthropic, tag: str
) -> None:
    with pytest.raises(anthropic.APIStatusError):
        await claude.messages.create(
            model="sim-e",
            max_tokens=5,
            messages=user(sim_line(fail={"status": 500, "type": "api_error"}, tag=tag)),
        )
    with pytest.raises(anthropic.APIStatusError):
        async with claude.messages.stream(
            model="sim-e",
            max_tokens=50,
            messages=user(sim_line(tokens=5, fail={"after_tokens": 2}, tag=tag)),
        ) as stream:
            await stream.get_final_message()
    mine = await sim.stats(tag)
    assert mine["errors_injected"] == 2
    assert mine["tokens_generated"] == 2


async def test_anthropic_client_closing_early_is_counted(
    sim: Any, claude: anthropic.AsyncAnthropic, tag: str
) -> None:
    line = sim_line(tokens=1000, token_delay_ms=20, tag=tag)
    async with claude.messages.stream(model="sim-early", max_tokens=2000, messages=user(line)) as s:
        async for text in s.text_stream:
            assert text
            break
        assert (await sim.stats(tag))["streams_open"] == 1

    async def closed() -> bool:
        mine = await sim.stats(tag)
        return mine["streams_closed_early"] == 1 and mine["streams_open"] == 0

    await sim.wait_until(closed, what="streams_closed_early == 1")
    # Generation stopped with the stream: tokens are only counted while it is open.
    assert 1 <= (await sim.stats(tag))["tokens_generated"] < 1000


async def test_openai_client_closing_early_is_counted(
    sim: Any, oai: openai.AsyncOpenAI, tag: str
) -> None:
    line = sim_line(tokens=1000, token_delay_ms=20, tag=tag)
    stream = await oai.chat.completions.create(model="sim-early", messages=user(line), stream=True)
    async for _chunk in stream:
        break
    await stream.close()

    async def closed() -> bool:
        mine = await sim.stats(tag)
        return mine["streams_closed_early"] == 1 and mine["streams_open"] == 0

    await sim.wait_until(closed, what="streams_closed_early == 1")
    assert (await sim.stats(tag))["tokens_generated"] < 1000


async def test_fault_scoped_to_one_model(
    admin: httpx.AsyncClient, claude: anthropic.AsyncAnthropic, oai: openai.AsyncOpenAI
) -> None:
    fault = {"error_rate": 1.0, "status": 529, "type": "overloaded_error", "models": ["sim-broken"]}
    put = await admin.put("/admin/faults", json=fault)
    assert put.status_code == 200
    assert (await admin.get("/admin/faults")).json() == put.json() | fault
    with pytest.raises(anthropic.APIStatusError) as caught:
        await claude.messages.create(model="sim-broken", max_tokens=5, messages=user("hi"))
    assert caught.value.status_code == 529
    with pytest.raises(openai.APIStatusError) as caught_oai:
        await oai.chat.completions.create(model="sim-broken", messages=user("hi"))
    assert caught_oai.value.status_code == 529
    healthy = await claude.messages.create(model="sim-healthy", max_tokens=5, messages=user("hi"))
    assert healthy.content


async def test_fault_latency_is_scoped(
    admin: httpx.AsyncClient, claude: anthropic.AsyncAnthropic
) -> None:
    await admin.put("/admin/faults", json={"latency_ms": 300, "models": ["sim-slow"]})
    started = time.monotonic()
    await claude.messages.create(model="sim-slow", max_tokens=5, messages=user("hi"))
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await claude.messages.create(model="sim-quick", max_tokens=5, messages=user("hi"))
    assert time.monotonic() - started < 0.3


@pytest.mark.parametrize(
    "content",
    [
        b"{nope",
        b"[1]",
        b'{"error_rate": 2}',
        b'{"error_rate": 0.5, "colour": "red"}',
        b'{"models": "x"}',
    ],
)
async def test_bad_fault_is_400(admin: httpx.AsyncClient, content: bytes) -> None:
    response = await admin.put("/admin/faults", content=content)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["message"]


async def test_reset_zeroes_stats_and_faults(start_sim: Any) -> None:
    own = start_sim()
    client = anthropic.AsyncAnthropic(base_url=own.url, api_key="k", max_retries=0)
    line = sim_line(fail={"status": 529}, fail_times=1, tag="r")
    async with httpx.AsyncClient(base_url=own.url) as http:
        try:
            await http.put("/admin/faults", json={"error_rate": 1.0, "models": ["x"]})
            with pytest.raises(anthropic.APIStatusError):
                await client.messages.create(model="m", max_tokens=5, messages=user(line))
            await client.messages.create(model="m", max_tokens=5, messages=user(line))
            assert (await own.stats())["requests_total"] == 2
            assert (await http.post("/admin/reset")).status_code == 200
            stats = await own.stats()
            assert {k: stats[k] for k in COUNTERS} == dict.fromkeys(COUNTERS, 0)
            assert stats["by_model"] == stats["by_tag"] == {}
            assert (await http.get("/admin/faults")).json()["error_rate"] == 0.0
            with pytest.raises(anthropic.APIStatusError):  # fail_times counts again
                await client.messages.create(model="m", max_tokens=5, messages=user(line))
        finally:
            await client.close()
