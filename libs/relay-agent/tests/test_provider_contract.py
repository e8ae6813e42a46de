"""What every provider owes the agent loop, checked on each of them: the
Anthropic and OpenAI providers (real SDKs against modelsim) and the README's
example provider.

A turn is `TextDelta`s and then exactly one `TurnDone`, last; the text blocks
of the finished message are the deltas joined; the usage is counted; closing
the stream after the first delta is clean (the loop does it on every stop).
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from agent_testkit import user_message

from relay_agent.providers import Provider, TextDelta, TurnDone
from relay_core.models import ModelCatalog, ModelSpec

PROVIDERS = ["anthropic", "openai", "readme_echo"]


@pytest.fixture(params=PROVIDERS)
def subject(
    request: pytest.FixtureRequest,
    anthropic_provider: Provider,
    openai_provider: Provider,
    readme_modules: list[str],
) -> tuple[Provider, ModelSpec]:
    catalog = ModelCatalog.default()
    if request.param == "anthropic":
        return anthropic_provider, catalog.get("sim-default")
    if request.param == "openai":
        return openai_provider, catalog.get("sim-openai")
    echo: Provider = importlib.import_module("my_provider").EchoProvider()
    return echo, ModelSpec(name="echo", provider="anthropic", upstream_model="echo")


def _turn(provider: Provider, spec: ModelSpec, tag: str) -> Any:
    return provider.stream_turn(
        spec=spec,
        system="be brief",
        messages=[user_message("say something short", tag=tag)],
        tools=[],
        max_tokens=64,
    )


async def test_deltas_then_one_turn_done_with_the_same_text(
    subject: tuple[Provider, ModelSpec], tag: str
) -> None:
    provider, spec = subject
    items = [item async for item in _turn(provider, spec, tag)]
    assert items and isinstance(items[-1], TurnDone)
    deltas = items[:-1]
    assert deltas and all(isinstance(item, TextDelta) for item in deltas)
    done = items[-1]
    text = "".join(b["text"] for b in done.content_blocks if b["type"] == "text")
    assert text == "".join(d.text for d in deltas)
    assert done.tool_calls == [] and done.stop_reason == "end_turn"
    assert done.input_tokens > 0 and done.output_tokens > 0


async def test_closing_after_the_first_delta_is_clean(
    subject: tuple[Provider, ModelSpec], tag: str
) -> None:
    provider, spec = subject
    stream = _turn(provider, spec, tag)
    first = await anext(stream)
    assert isinstance(first, TextDelta)
    await stream.aclose()
