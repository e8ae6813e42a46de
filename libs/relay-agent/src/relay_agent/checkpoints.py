"""What the loop records before it moves on, and how a later attempt resumes from it.

The caller stores checkpoints (the runner, through state's Postgres); the loop
only says what to record and reads back what earlier attempts recorded:

- `model_turn` (call index 0) after each finished turn: its content blocks,
  model, stop reason, tokens and cost. A restored turn is replayed without
  calling the model.
- `tool_call` BEFORE a non-idempotent tool runs. A call that was started but
  has no result (a crash in between) is NOT run again: the model gets
  `UNKNOWN_OUTCOME` as an error result and decides.
- `tool_result` after each tool. A restored result is reused without running
  the tool.

Every call's dedupe key is `run_id:step:index` (`dedupe_key`), the same in
every attempt, for a non-idempotent tool to pass on as an idempotency key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from relay_agent.providers.base import ToolCall
from relay_agent.tools.registry import ToolContext

__all__ = [
    "UNKNOWN_OUTCOME",
    "CheckpointFn",
    "CheckpointLike",
    "Restored",
    "dedupe_key",
    "resume_step",
    "tool_uses",
]

# checkpoint(step, kind, call_index, payload): awaited before the loop goes on;
# if it raises (a stale attempt, say), the exception leaves the loop.
CheckpointFn = Callable[[int, str, int, dict[str, Any]], Awaitable[None]]

UNKNOWN_OUTCOME = "outcome unknown after a crash; not executed again"


class CheckpointLike(Protocol):
    """A checkpoint an earlier attempt recorded (the runner's are state's rows)."""

    @property
    def step(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def call_index(self) -> int: ...
    @property
    def payload(self) -> dict[str, Any]: ...


class Restored:
    """What earlier attempts finished, indexed for the loop."""

    def __init__(self, checkpoints: Sequence[CheckpointLike]) -> None:
        self.turns: dict[int, dict[str, Any]] = {}
        self.results: dict[tuple[int, int], dict[str, Any]] = {}
        self.started: set[tuple[int, int]] = set()
        for cp in checkpoints:
            if cp.kind == "model_turn":
                self.turns[cp.step] = cp.payload
            elif cp.kind == "tool_result":
                self.results[(cp.step, cp.call_index)] = cp.payload
            elif cp.kind == "tool_call":
                self.started.add((cp.step, cp.call_index))


def resume_step(checkpoints: Sequence[CheckpointLike]) -> int:
    """The first step that earlier attempts did not finish (turn and all its tools)."""
    restored = Restored(checkpoints)
    step = 0
    while step in restored.turns:
        calls = tool_uses(restored.turns[step].get("content", []))
        if any((step, i) not in restored.results for i in range(len(calls))):
            return step
        step += 1
    return step


def tool_uses(blocks: list[dict[str, Any]]) -> list[ToolCall]:
    """The tool calls of an assistant message in Anthropic's block format."""
    return [
        ToolCall(str(b.get("id", "")), str(b.get("name", "")), b.get("input") or {})
        for b in blocks
        if b.get("type") == "tool_use"
    ]


def dedupe_key(ctx: ToolContext, step: int, index: int) -> str:
    """A tool call's identity across attempts: (run_id, step, call index)."""
    return f"{ctx.run_id}:{step}:{index}"
