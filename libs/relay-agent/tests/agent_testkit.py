"""Test helpers: drive the agent loop (checkpoint store, stop switch, tools), poll,
modelsim, and the README's examples as importable files."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay_agent import Agent, AgentInputs
from relay_agent.providers import Provider
from relay_agent.tools import Tool, ToolContext, default_registry
from relay_core.events import Event, StopReason
from relay_core.models import ModelCatalog


@dataclass
class Cp:
    step: int
    kind: str
    call_index: int
    payload: dict[str, Any]


@dataclass
class Harness:
    """Records checkpoints, tool executions and events in one ordered log."""

    checkpoints: list[Cp] = field(default_factory=list)
    log: list[tuple[Any, ...]] = field(default_factory=list)
    executed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    stop_reason: StopReason | None = None
    stop_after_tokens: int | None = None
    stop_on_tool_start: bool = False
    tokens_seen: int = 0

    async def checkpoint(self, step: int, kind: str, call_index: int, payload: dict[str, Any]):
        self.checkpoints.append(Cp(step, kind, call_index, json.loads(json.dumps(payload))))
        self.log.append(("cp", kind, step, call_index))

    async def should_stop(self) -> StopReason | None:
        if self.stop_after_tokens is not None and self.tokens_seen >= self.stop_after_tokens:
            return "cancelled"
        return self.stop_reason

    def tools(self) -> list[Tool]:
        async def record(args: dict[str, Any], ctx: ToolContext) -> str:
            self.executed.append(("record", args))
            self.log.append(("exec", "record"))
            return f"recorded {args['value']}"

        async def echo(args: dict[str, Any], ctx: ToolContext) -> str:
            self.executed.append(("echo", args))
            self.log.append(("exec", "echo"))
            return f"echo {args['text']}"

        value_schema = {"type": "object", "properties": {"value": {"type": "string"}},
                        "required": ["value"]}  # fmt: skip
        text_schema = {"type": "object", "properties": {"text": {"type": "string"}},
                       "required": ["text"]}  # fmt: skip
        return [
            Tool("record", "append to a durable log", value_schema, record, idempotent=False),
            Tool("echo", "say it back", text_schema, echo, idempotent=True),
        ]

    async def drive(self, agent: Agent) -> list[Event]:
        out = []
        async for event in agent.run():
            out.append(event)
            self.log.append(("ev", event.type, event.data.get("step")))
            if event.type == "token":
                self.tokens_seen += 1
            if event.type == "tool_start" and self.stop_on_tool_start:
                self.stop_reason = "cancelled"
        return out


def user_message(text: str, **directive: Any) -> dict[str, Any]:
    body = f"{text}\n#sim {json.dumps(directive)}" if directive else text
    return {"role": "user", "content": [{"type": "text", "text": body}]}


def make_agent(
    harness: Harness,
    providers: dict[str, Provider],
    history: list[dict[str, Any]],
    *,
    model: str = "sim-default",
    restored: list[Cp] | None = None,
    **kw: Any,
) -> Agent:
    return Agent(
        AgentInputs(
            chain=ModelCatalog.default().chain(model),
            providers=providers,
            history=history,
            registry=default_registry(harness.tools()),
            checkpoint=harness.checkpoint,
            should_stop=harness.should_stop,
            restored=restored or [],
            retry_backoff_s=0.01,
            **kw,
        )
    )


def text_of(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.type == "token")


@dataclass(frozen=True)
class Modelsim:
    url: str

    async def stats(self, tag: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url) as http:
            resp = await http.get("/admin/stats", params={"tag": tag})
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 5.0, what: str = "condition"
) -> None:
    """Poll an async condition until it holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


README = Path(__file__).resolve().parents[1] / "README.md"
_FILE_BLOCK = re.compile(r"```python\n# (\w+\.py)\n(.*?)```", re.DOTALL)


def write_readme_files(dest: Path) -> list[str]:
    """Write the README's Python examples (fenced blocks whose first line is
    `# name.py`) as files under `dest`; returns their module names."""
    names = []
    for filename, body in _FILE_BLOCK.findall(README.read_text(encoding="utf-8")):
        (dest / filename).write_text(body, encoding="utf-8")
        names.append(filename.removesuffix(".py"))
    return names
