"""A real modelsim server in a background thread, and SDK clients pointed at it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
import uvicorn

from relay_modelsim.app import create_app
from relay_modelsim.config import Settings


@dataclass(frozen=True)
class Sim:
    url: str

    async def wait_until(
        self, probe: Callable[[], Awaitable[bool]], *, timeout: float = 5.0, what: str = "it"
    ) -> None:
        """Poll `probe` until it is true; fail the test at the deadline."""
        deadline = time.monotonic() + timeout
        while not await probe():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.02)

    async def stats(self, tag: str | None = None) -> dict[str, Any]:
        params = {"tag": tag} if tag else {}
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.get("/admin/stats", params=params)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


@contextmanager
def serve(settings: Settings) -> Iterator[Sim]:
    """Run uvicorn on a free port in a thread until the block exits."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_config=None, lifespan="off")
    config.timeout_graceful_shutdown = 1
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        assert time.monotonic() < deadline, "modelsim did not start"
        assert thread.is_alive(), "modelsim thread died"
        time.sleep(0.01)
    try:
        yield Sim(url=f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def fast_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"tokens": 12, "token_delay_ms": 1, "ttft_ms": 1, "api_key": None}
    return Settings(**(values | overrides))


@pytest.fixture(scope="session")
def sim() -> Iterator[Sim]:
    with serve(fast_settings()) as running:
        yield running


@pytest.fixture
def start_sim() -> Iterator[Callable[..., Sim]]:
    """Start extra servers with their own settings (stopped after the test)."""
    with ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(serve(fast_settings(**overrides)))


@pytest.fixture
def tag() -> str:
    """A tag of this test's own, so its stats are not shared with other tests."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def claude(sim: Sim) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=sim.url, api_key="test-key", max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def oai(sim: Sim) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key="test-key", max_retries=0)
    yield client
    await client.close()
