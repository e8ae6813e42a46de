"""The three clients of interactive.py and the shapes of load they are driven in.

Every scenario times the same request three ways (see bench/interactive.py):
`relay_request` (the gateway's `POST /v1/chat/stream`, to the first `token`),
`sdk_request` (modelsim through the real `anthropic` SDK, THE BASELINE) and
`raw_model_request` (modelsim through the lean client, without the SDK's own
CPU). Each is a `Request`: a zero-argument coroutine factory, its bytes built
once up front so that starting it costs as little as possible; the load
shapes (`burst`, `one_by_one`, `paced`) only decide when each one starts.

`Sim` is what modelsim is told to do (its `#sim` directive), so a scenario
fixes the model's TTFT and streaming and Relay's share can be told apart.

Not a bench script (no `main()`): bench/interactive.py imports it as a sibling.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anthropic
from leanhttp import REQUEST_TIMEOUT_S, Timing, http_post, lean_request

from relay_devstack.stack import Stack

MODEL = "sim-default"
SIM_KEY = "sim-key"


@dataclass(frozen=True)
class Sim:
    """What modelsim is told to do for every request (the `#sim` directive)."""

    ttft_ms: float
    tokens: int
    token_delay_ms: float

    def message(self, n: int) -> str:
        directive = {
            "ttft_ms": self.ttft_ms,
            "tokens": self.tokens,
            "token_delay_ms": self.token_delay_ms,
        }
        return f"benchmark turn {n}: say something\n#sim {json.dumps(directive)}"


Request = Callable[[], Coroutine[Any, Any, Timing]]


def relay_request(stack: Stack, key: str, text: str) -> Request:
    request = http_post(
        stack.gateway_url, "/v1/chat/stream", {"message": text}, {"Authorization": f"Bearer {key}"}
    )
    return lambda: lean_request(stack.gateway_url, request, mark="token", end="done")


def raw_model_request(stack: Stack, text: str) -> Request:
    body = {
        "model": MODEL,
        "max_tokens": 1024,
        "stream": True,
        "messages": [{"role": "user", "content": text}],
    }
    headers = {"x-api-key": SIM_KEY, "anthropic-version": "2023-06-01"}
    request = http_post(stack.modelsim_url, "/v1/messages", body, headers)
    return lambda: lean_request(
        stack.modelsim_url, request, mark="content_block_delta", end="message_stop"
    )


def sdk_request(client: anthropic.AsyncAnthropic, text: str) -> Request:
    async def one() -> Timing:
        timing = Timing(t0=time.time(), p0=time.perf_counter())
        try:
            async with (
                asyncio.timeout(REQUEST_TIMEOUT_S),
                client.messages.stream(
                    model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": text}]
                ) as stream,
            ):
                async for event in stream:
                    if (
                        timing.ttft is None
                        and event.type == "content_block_delta"
                        and event.delta.type == "text_delta"
                    ):
                        timing.ttft = time.perf_counter() - timing.p0
            timing.status, timing.ended = 200, True
        except (anthropic.APIError, TimeoutError) as exc:
            timing.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        return timing

    return one


def run_seconds(sim: Sim) -> float:
    """How long one run streams: its TTFT, then every token."""
    return (sim.ttft_ms + sim.tokens * sim.token_delay_ms) / 1000


# ---------------------------------------------------------------- load shapes


async def burst(requests: list[Request]) -> list[Timing]:
    """Start every request at once (one event-loop turn) and wait for all."""
    return list(await asyncio.gather(*(make() for make in requests)))


async def one_by_one(requests: list[Request]) -> list[Timing]:
    return [await make() for make in requests]


async def paced(requests: list[Request], rate: float) -> tuple[list[Timing], list[int]]:
    """Start the requests at `rate` per second (open loop: a slow answer does not
    slow the arrivals); also returns how many were in flight as each started."""
    tasks: list[asyncio.Task[Timing]] = []
    in_flight: list[int] = []
    started = time.perf_counter()
    for n, make in enumerate(requests):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        in_flight.append(sum(1 for t in tasks if not t.done()))
        tasks.append(asyncio.create_task(make()))
    return list(await asyncio.gather(*tasks)), in_flight
