"""The built-in tools: `calculator`, `get_time`, `wait` and `search_docs`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from relay_agent.tools.calculator import CalculatorError, evaluate, format_number
from relay_agent.tools.registry import Tool, ToolContext, ToolError

__all__ = ["MAX_WAIT_S", "builtin_tools"]

MAX_WAIT_S = 600


async def _calculator(args: dict[str, Any], ctx: ToolContext) -> str:
    try:
        return format_number(evaluate(args["expression"]))
    except CalculatorError as exc:
        raise ToolError(str(exc)) from exc


async def _get_time(args: dict[str, Any], ctx: ToolContext) -> str:
    name = args.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(f"unknown time zone {name!r}; use an IANA name like Europe/Paris") from exc
    return datetime.now(UTC).astimezone(zone).isoformat(timespec="seconds")


async def _wait(args: dict[str, Any], ctx: ToolContext) -> str:
    seconds = float(args["seconds"])
    await asyncio.sleep(seconds)
    return f"waited {seconds:g} seconds"


async def _search_docs(args: dict[str, Any], ctx: ToolContext) -> str:
    if ctx.search is None:
        raise ToolError("document search is not available in this run")
    hits = await ctx.search(args["query"], int(args.get("limit", 5)))
    if not hits:
        return "no documents match"
    lines = [f"- {h.get('title', '')}: {h.get('snippet', '')}" for h in hits]
    return "\n".join(lines)


def builtin_tools() -> list[Tool]:
    return [
        Tool(
            name="calculator",
            description="Evaluate an arithmetic expression: numbers, + - * / // % ** and ().",
            input_schema={
                "type": "object",
                "properties": {"expression": {"type": "string", "maxLength": 500}},
                "required": ["expression"],
                "additionalProperties": False,
            },
            run=_calculator,
        ),
        Tool(
            name="get_time",
            description="The current time, in UTC or in an IANA time zone.",
            input_schema={
                "type": "object",
                "properties": {"timezone": {"type": "string", "maxLength": 64}},
                "additionalProperties": False,
            },
            run=_get_time,
        ),
        Tool(
            name="wait",
            description=f"Wait a number of seconds (at most {MAX_WAIT_S}).",
            input_schema={
                "type": "object",
                "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S}},
                "required": ["seconds"],
                "additionalProperties": False,
            },
            run=_wait,
        ),
        Tool(
            name="search_docs",
            description="Full-text search over the documents the user has loaded.",
            input_schema={
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": 500},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                },
                "required": ["query"],
                "additionalProperties": False,
            },
            run=_search_docs,
        ),
    ]
