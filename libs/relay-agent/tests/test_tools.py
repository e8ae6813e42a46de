"""The tool registry turns every failure into an error result, never a crash."""

from __future__ import annotations

import sys
import time
import types
from datetime import datetime
from typing import Any

import pytest

from relay_agent.tools import (
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    default_registry,
    load_plugins,
)


async def test_calculator_tool_answers_and_refuses() -> None:
    registry = default_registry()
    ok = await registry.execute("calculator", {"expression": "6*7"}, ToolContext())
    assert (ok.content, ok.is_error) == ("42", False)
    bad = await registry.execute("calculator", {"expression": "__import__('os')"}, ToolContext())
    assert bad.is_error and "not allowed" in bad.content


async def test_unknown_tool_is_an_error_result() -> None:
    out = await default_registry().execute("rm_rf", {}, ToolContext())
    assert out.is_error and "unknown tool 'rm_rf'" in out.content


@pytest.mark.parametrize(
    "args",
    [{}, {"expression": 5}, {"expression": "1", "extra": True}, ["not", "a", "dict"]],
)
async def test_schema_invalid_args_are_an_error_result(args: Any) -> None:
    out = await default_registry().execute("calculator", args, ToolContext())
    assert out.is_error
    assert "calculator" in out.content or "JSON object" in out.content


async def test_tool_exceptions_become_error_results() -> None:
    async def boom(args: dict[str, Any], ctx: ToolContext) -> str:
        raise RuntimeError("kaput")

    async def refuse(args: dict[str, Any], ctx: ToolContext) -> str:
        raise ToolError("not today")

    schema = {"type": "object"}
    registry = ToolRegistry([Tool("boom", "", schema, boom), Tool("refuse", "", schema, refuse)])
    crashed = await registry.execute("boom", {}, ToolContext())
    assert crashed.is_error and "RuntimeError: kaput" in crashed.content
    refused = await registry.execute("refuse", {}, ToolContext())
    assert (refused.content, refused.is_error) == ("not today", True)


def test_registry_rejects_duplicates_and_bad_schemas() -> None:
    async def run(args: dict[str, Any], ctx: ToolContext) -> str:
        return ""

    registry = default_registry()
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Tool("calculator", "", {"type": "object"}, run))
    with pytest.raises(Exception, match="is not valid"):
        registry.register(Tool("bad", "", {"type": "no-such-type"}, run))


def test_schemas_and_idempotency() -> None:
    registry = default_registry()
    names = [s["name"] for s in registry.schemas()]
    assert names == ["calculator", "get_time", "wait", "search_docs"]
    assert all("input_schema" in s and "description" in s for s in registry.schemas())
    assert registry.is_idempotent("wait") and registry.is_idempotent("unknown")


async def test_get_time_utc_and_zones() -> None:
    registry = default_registry()
    utc = await registry.execute("get_time", {}, ToolContext())
    assert datetime.fromisoformat(utc.content).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    paris = await registry.execute("get_time", {"timezone": "Europe/Paris"}, ToolContext())
    assert not paris.is_error and datetime.fromisoformat(paris.content).tzinfo is not None
    bad = await registry.execute("get_time", {"timezone": "Mars/Olympus"}, ToolContext())
    assert bad.is_error and "unknown time zone" in bad.content


async def test_wait_sleeps_and_is_bounded() -> None:
    registry = default_registry()
    started = time.monotonic()
    out = await registry.execute("wait", {"seconds": 0.05}, ToolContext())
    assert not out.is_error and time.monotonic() - started >= 0.05
    too_long = await registry.execute("wait", {"seconds": 601}, ToolContext())
    assert too_long.is_error


async def test_search_docs_uses_the_context_search() -> None:
    calls: list[tuple[str, int]] = []

    async def search(query: str, limit: int) -> list[dict[str, Any]]:
        calls.append((query, limit))
        return [{"title": "Lease", "snippet": "a lease is renewed", "document_id": "d1"}]

    registry = default_registry()
    out = await registry.execute("search_docs", {"query": "lease"}, ToolContext(search=search))
    assert calls == [("lease", 5)] and "Lease: a lease is renewed" in out.content
    missing = await registry.execute("search_docs", {"query": "lease"}, ToolContext())
    assert missing.is_error and "not available" in missing.content


def test_load_plugins() -> None:
    async def run(args: dict[str, Any], ctx: ToolContext) -> str:
        return "ok"

    module = types.ModuleType("relay_test_plugin_mod")
    module.tools = lambda: [Tool("extra", "an extra tool", {"type": "object"}, run)]  # type: ignore[attr-defined]
    module.broken = lambda: ["not a tool"]  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        assert [t.name for t in load_plugins("relay_test_plugin_mod:tools")] == ["extra"]
        assert load_plugins("") == [] and load_plugins(None) == []
        with pytest.raises(ValueError, match="module:function"):
            load_plugins("no_colon")
        with pytest.raises(TypeError):
            load_plugins("relay_test_plugin_mod:broken")
    finally:
        del sys.modules[module.__name__]
