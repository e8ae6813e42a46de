"""Regression tests for the agent loop's crash-safety, found by the chaos suite.

- `test_tools_get_the_dedupe_key_of_their_call`: a non-idempotent tool was
  promised a dedupe key (run_id, step, call index) but got the same context
  for every call, with no key, so it could not deduplicate downstream.
- `test_a_stop_known_before_a_tool_keeps_it_from_starting`: a cancel learnt
  from a checkpoint (the durable path, when the Redis flag was lost) was only
  noticed once the next tool was already running.
- `test_a_tool_interrupted_by_a_lost_lease_is_not_recorded_as_finished`: a
  tool cut short by a stop was checkpointed as finished with an
  "interrupted" error result; after a lost lease (Redis lost its data, say)
  the attempt that took over restored that result and never ran the tool.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from agent_testkit import Harness, make_agent, user_message

from relay_agent import UNKNOWN_OUTCOME
from relay_agent.tools import Tool, ToolContext
from relay_core.events import StopReason


@dataclass
class KeyHarness(Harness):
    """The harness's tools, plus `stamp` (non-idempotent) that keeps its context's
    key, and `slow` (idempotent) that takes `slow_s` seconds."""

    keys: list[str] = field(default_factory=list)
    slow_s: float = 0.0

    def tools(self) -> list[Tool]:
        async def stamp(args: dict[str, Any], ctx: ToolContext) -> str:
            self.keys.append(ctx.dedupe_key)
            return "stamped"

        async def slow(args: dict[str, Any], ctx: ToolContext) -> str:
            self.executed.append(("slow", args))
            await asyncio.sleep(self.slow_s)
            return "slow done"

        schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
        return [
            *super().tools(),
            Tool("stamp", "stamp once", schema, stamp, idempotent=False),
            Tool("slow", "take a while", schema, slow, idempotent=True),
        ]


async def test_tools_get_the_dedupe_key_of_their_call(anthropic_provider: Any, tag: str) -> None:
    h = KeyHarness()
    tools = [{"name": "stamp", "args": {"n": 1}},
             {"name": "echo", "args": {"text": "x"}},
             {"name": "stamp", "args": {"n": 2}}]  # fmt: skip
    history = [user_message("go", tools=tools, tag=tag)]
    agent = make_agent(
        h, {"anthropic": anthropic_provider}, history, tool_context=ToolContext(run_id="run_k")
    )
    await h.drive(agent)
    assert agent.result.status == "succeeded"
    assert h.keys == ["run_k:0:0", "run_k:0:2"]


async def test_a_tool_interrupted_by_a_lost_lease_is_not_recorded_as_finished(
    anthropic_provider: Any, tag: str
) -> None:
    tools = [{"name": "record", "args": {"value": "v"}},
             {"name": "slow", "args": {"n": 1}}]  # fmt: skip
    history = [user_message("go", tools=tools, tag=tag)]
    first = KeyHarness(slow_s=30)

    async def lease_lost_in_wait() -> StopReason | None:
        started = [e for e in first.log if e[:2] == ("ev", "tool_start")]
        return "lease_lost" if len(started) == 2 else None

    first.should_stop = lease_lost_in_wait  # type: ignore[method-assign]
    agent = make_agent(first, {"anthropic": anthropic_provider}, history)
    await first.drive(agent)
    assert agent.result.stop_reason == "lease_lost"
    # record finished and is recorded; wait was cut short and is NOT.
    assert [(c.kind, c.call_index) for c in first.checkpoints] == [
        ("model_turn", 0), ("tool_call", 0), ("tool_result", 0)]  # fmt: skip
    assert first.executed == [("record", {"value": "v"}), ("slow", {"n": 1})]

    second = KeyHarness(slow_s=0)
    resumed = make_agent(
        second, {"anthropic": anthropic_provider}, history, restored=first.checkpoints
    )
    events = await second.drive(resumed)
    assert resumed.result.status == "succeeded"
    ends = [e.data for e in events if e.type == "tool_end"]
    assert [(e["name"], e["ok"]) for e in ends] == [("slow", True)]
    assert second.executed == [("slow", {"n": 1})]  # run again; record is not
    assert UNKNOWN_OUTCOME not in str(ends)


async def test_a_stop_known_before_a_tool_keeps_it_from_starting(
    anthropic_provider: Any, tag: str
) -> None:
    h = KeyHarness()

    async def cancel_once_the_turn_is_recorded() -> StopReason | None:
        return "cancelled" if h.checkpoints else None

    h.should_stop = cancel_once_the_turn_is_recorded  # type: ignore[method-assign]
    tools = [{"name": "stamp", "args": {"n": 1}}, {"name": "echo", "args": {"text": "x"}}]
    agent = make_agent(
        h, {"anthropic": anthropic_provider}, [user_message("go", tools=tools, tag=tag)]
    )
    events = await h.drive(agent)
    assert agent.result.status == "cancelled"
    assert h.keys == [] and h.executed == []
    assert "tool_start" not in [e.type for e in events]
    results = agent.result.messages[-1].content
    assert [b["is_error"] for b in results] == [True, True]  # the transcript stays valid
