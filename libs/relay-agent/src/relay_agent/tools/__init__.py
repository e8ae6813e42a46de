"""Agent tools: the registry and the built-ins (see `registry` for the decisions)."""

from relay_agent.tools.builtin import builtin_tools
from relay_agent.tools.registry import (
    SearchFn,
    Tool,
    ToolContext,
    ToolError,
    ToolOutcome,
    ToolRegistry,
    load_plugins,
)

__all__ = [
    "SearchFn",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutcome",
    "ToolRegistry",
    "builtin_tools",
    "default_registry",
    "load_plugins",
]


def default_registry(extra: list[Tool] | None = None) -> ToolRegistry:
    """The built-in tools plus `extra` (a plugin's tools)."""
    return ToolRegistry([*builtin_tools(), *(extra or [])])
