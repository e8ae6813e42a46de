"""Tools the agent can call: the `Tool` record, the registry, and plugins.

Decisions:
- A tool never crashes a run. An unknown tool, arguments that fail the tool's
  JSON schema, a `ToolError` raised by the tool and any unexpected exception
  all become an error result (`is_error=True`) that goes back to the model,
  which can correct itself.
- `idempotent` is declared per tool: the agent loop checkpoints a
  non-idempotent call as started BEFORE running it, so a crash in between is
  detected and the call is never run twice.
- Tools get a `ToolContext` with what the runner lends them (the run's ids, a
  `search` function scoped to the run's user); no tool opens a database or
  Redis connection of its own.
- Results are text, capped at `MAX_RESULT_CHARS` so one tool cannot blow the
  context window or the checkpoint row.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

__all__ = [
    "MAX_RESULT_CHARS",
    "SearchFn",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutcome",
    "ToolRegistry",
    "load_plugins",
]

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 20_000

SearchFn = Callable[[str, int], Awaitable[list[dict[str, Any]]]]


class ToolError(Exception):
    """An expected tool failure; its message is what the model reads."""


@dataclass
class ToolContext:
    run_id: str = ""
    user_id: str = ""
    search: SearchFn | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # This call's identity across attempts, `run_id:step:call_index` (set by the
    # agent loop per call): what a non-idempotent tool sends downstream as its
    # idempotency key.
    dedupe_key: str = ""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    run: Callable[[dict[str, Any], ToolContext], Awaitable[str]]
    idempotent: bool = True

    def schema(self) -> dict[str, Any]:
        """The tool as the provider sees it (Anthropic format)."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    is_error: bool = False


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        validator_cls = jsonschema.validators.validator_for(tool.input_schema)
        validator_cls.check_schema(tool.input_schema)
        self._tools[tool.name] = tool
        self._validators[tool.name] = validator_cls(tool.input_schema)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self._tools.values()]

    def is_idempotent(self, name: str) -> bool:
        """Unknown tools count as idempotent: they are never executed anyway."""
        tool = self._tools.get(name)
        return tool is None or tool.idempotent

    def check(self, name: str, args: Any) -> str | None:
        """Why this call cannot run (unknown tool, invalid args), or None."""
        if name not in self._tools:
            return f"unknown tool {name!r}; available: {', '.join(self._tools) or 'none'}"
        if not isinstance(args, dict):
            return "tool arguments must be a JSON object"
        error = jsonschema.exceptions.best_match(self._validators[name].iter_errors(args))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "arguments"
            return f"invalid arguments for {name}: {where}: {error.message}"
        return None

    async def execute(self, name: str, args: Any, ctx: ToolContext) -> ToolOutcome:
        problem = self.check(name, args)
        if problem is not None:
            return ToolOutcome(problem, is_error=True)
        try:
            result = await self._tools[name].run(args, ctx)
        except ToolError as exc:
            return ToolOutcome(str(exc)[:MAX_RESULT_CHARS], is_error=True)
        except Exception as exc:  # a tool bug must not end the run
            log.exception("tool failed", extra={"tool": name})
            return ToolOutcome(f"tool {name} failed: {type(exc).__name__}: {exc}"[:2000], True)
        return ToolOutcome(_cap(str(result)))


def _cap(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[:MAX_RESULT_CHARS] + f"\n[truncated {len(text) - MAX_RESULT_CHARS} characters]"


def load_plugins(specs: str | None) -> list[Tool]:
    """Tools from `module:function` specs (comma-separated); each returns a list of Tools."""
    tools: list[Tool] = []
    for spec in (s.strip() for s in (specs or "").split(",")):
        if not spec:
            continue
        module_name, sep, func_name = spec.partition(":")
        if not sep or not module_name or not func_name:
            raise ValueError(f"tool plugin {spec!r} is not 'module:function'")
        factory = getattr(importlib.import_module(module_name), func_name)
        found = list(factory())
        bad = [t for t in found if not isinstance(t, Tool)]
        if bad:
            raise TypeError(f"tool plugin {spec!r} returned non-Tool values: {bad!r}")
        tools.extend(found)
    return tools
