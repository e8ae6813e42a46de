"""A real modelsim process for the agent-loop tests, and the real SDK providers on it."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from relay_agent.providers import AnthropicProvider, OpenAIProvider
from relay_devstack.procs import Child, free_port, port_open, wait_until

# The helper module next to this file (tests here are not a package).
sys.path.insert(0, str(Path(__file__).parent))
from agent_testkit import Modelsim, write_readme_files


def modelsim_binary() -> str:
    found = Path(sys.executable).parent / "relay-modelsim"
    return str(found) if found.exists() else (shutil.which("relay-modelsim") or "relay-modelsim")


@pytest.fixture(scope="session")
def modelsim(relay_tmp: Path) -> Iterator[Modelsim]:
    port = free_port()
    env = dict(os.environ) | {
        "RELAY_MODELSIM_PORT": str(port),
        "RELAY_MODELSIM_TOKENS": "8",
        "RELAY_MODELSIM_TOKEN_DELAY_MS": "1",
        "RELAY_MODELSIM_TTFT_MS": "1",
    }
    child = Child(
        "modelsim", [modelsim_binary()], log_path=relay_tmp / "agent-modelsim.log", env=env
    )
    try:
        wait_until(lambda: child.alive() and port_open(port), timeout_s=15, what="modelsim")
        yield Modelsim(url=f"http://127.0.0.1:{port}")
    finally:
        child.stop()


@pytest.fixture
def tag() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def anthropic_provider(modelsim: Modelsim) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider.create(base_url=modelsim.url, api_key="test-key")
    yield provider
    await provider.aclose()


@pytest.fixture
async def openai_provider(modelsim: Modelsim) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider.create(base_url=f"{modelsim.url}/v1", api_key="test-key")
    yield provider
    await provider.aclose()


@pytest.fixture
def readme_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The README's examples, importable by their file names for this test only."""
    names = write_readme_files(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)  # and again after the test
    return names
