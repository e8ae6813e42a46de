"""The README's examples work as written: the tool through the plugin loader
the runner uses, the provider driving the agent loop."""

from __future__ import annotations

import importlib
from typing import Any

from relay_agent.tools import ToolContext, default_registry, load_plugins


def test_the_readme_has_its_examples(readme_modules: list[str]) -> None:
    assert readme_modules == ["my_tools", "my_provider", "echo_run"]


async def test_the_tool_example_loads_as_a_plugin_and_runs(readme_modules: list[str]) -> None:
    # What relay_runner.runtime does with RELAY_EXTRA_TOOLS=my_tools:tools.
    registry = default_registry(load_plugins("my_tools:tools"))
    assert "shout" in registry.names() and "calculator" in registry.names()
    assert registry.is_idempotent("shout")
    ok = await registry.execute("shout", {"text": " hello "}, ToolContext())
    assert (ok.content, ok.is_error) == ("HELLO!", False)
    blank = await registry.execute("shout", {"text": "  "}, ToolContext())
    assert blank.is_error and "nothing to shout" in blank.content
    invalid = await registry.execute("shout", {"text": "x" * 201}, ToolContext())
    assert invalid.is_error and "invalid arguments for shout" in invalid.content


async def test_the_provider_example_drives_the_loop(readme_modules: list[str]) -> None:
    echo_run: Any = importlib.import_module("echo_run")
    assert await echo_run.echo("hello from the loop") == "hello from the loop"
