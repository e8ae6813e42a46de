"""The agent loop against a real modelsim through the real SDKs."""

from __future__ import annotations

from typing import Any

import pytest
from agent_testkit import Harness, Modelsim, make_agent, text_of, user_message, wait_for

from relay_agent import UNKNOWN_OUTCOME
from relay_core.models import ModelCatalog, ModelSpec, cost_usd


async def test_text_turn(anthropic_provider: Any, modelsim: Modelsim, tag: str) -> None:
    h = Harness()
    agent = make_agent(h, {"anthropic": anthropic_provider}, [user_message("hi", tag=tag)])
    events = await h.drive(agent)
    result = agent.result
    assert result.status == "succeeded" and result.error is None
    assert [e.type for e in events].count("token") == 8
    assert [m.role for m in result.messages] == ["assistant"]
    assert result.messages[0].content == [{"type": "text", "text": text_of(events)}]
    usage = next(e for e in events if e.type == "usage")
    spec = ModelCatalog.default().get("sim-default")
    expected = cost_usd(spec, usage.data["input_tokens"], usage.data["output_tokens"])
    assert usage.data["cost_usd"] == pytest.approx(expected) == pytest.approx(result.cost_usd)
    assert [(c.step, c.kind) for c in h.checkpoints] == [(0, "model_turn")]
    # state sums this key to re-seed a lost daily counter (relay_state.spend)
    assert h.checkpoints[0].payload["cost_usd"] == pytest.approx(result.cost_usd)
    assert (await modelsim.stats(tag))["requests_total"] == 1


async def test_tool_turn_checkpoints_before_the_next_step(
    anthropic_provider: Any, tag: str
) -> None:
    h = Harness()
    tools = [{"name": "calculator", "args": {"expression": "2+2"}},
             {"name": "record", "args": {"value": "x1"}}]  # fmt: skip
    agent = make_agent(
        h, {"anthropic": anthropic_provider}, [user_message("go", tools=tools, tag=tag)]
    )
    events = await h.drive(agent)
    assert agent.result.status == "succeeded"
    starts = [e.data for e in events if e.type == "tool_start"]
    assert [(s["name"], s["step"]) for s in starts] == [("calculator", 0), ("record", 0)]
    ends = [e.data for e in events if e.type == "tool_end"]
    assert all(e["ok"] for e in ends)
    assert "Tool calculator returned 4. Tool record returned recorded x1." in text_of(events)
    order = [entry for entry in h.log if entry[0] in ("cp", "exec") or entry[1] == "token"]
    first_step1_token = order.index(("ev", "token", 1))
    assert order[:first_step1_token] == [
        ("cp", "model_turn", 0, 0),
        ("cp", "tool_result", 0, 0),
        ("cp", "tool_call", 0, 1),  # written BEFORE the non-idempotent tool runs
        ("exec", "record"),
        ("cp", "tool_result", 0, 1),
    ]
    assert order[-1] == ("cp", "model_turn", 1, 0)
    roles = [(m.role, [b["type"] for b in m.content]) for m in agent.result.messages]
    assert roles == [
        ("assistant", ["tool_use", "tool_use"]),
        ("user", ["tool_result", "tool_result"]),
        ("assistant", ["text"]),
    ]
    assert agent.result.steps == 2


async def test_resume_skips_finished_tools_and_never_reruns_a_started_one(
    anthropic_provider: Any, modelsim: Modelsim, tag: str
) -> None:
    tools = [{"name": "echo", "args": {"text": "hey"}},
             {"name": "record", "args": {"value": "once"}}]  # fmt: skip
    history = [user_message("go", tools=tools, tag=tag)]
    first = Harness()
    await first.drive(make_agent(first, {"anthropic": anthropic_provider}, history))
    assert [name for name, _ in first.executed] == ["echo", "record"]
    # The crash: record was started (tool_call written) but its result never was.
    survived = [c for c in first.checkpoints
                if c.step == 0 and (c.kind, c.call_index) != ("tool_result", 1)]  # fmt: skip
    assert [(c.kind, c.call_index) for c in survived] == [
        ("model_turn", 0), ("tool_result", 0), ("tool_call", 1)]  # fmt: skip
    requests_before = (await modelsim.stats(tag))["requests_total"]

    second = Harness()
    agent = make_agent(second, {"anthropic": anthropic_provider}, history, restored=survived)
    assert agent.resume_step == 0
    events = await second.drive(agent)
    assert agent.result.status == "succeeded"
    assert second.executed == []  # echo was finished, record must not run twice
    assert (await modelsim.stats(tag))["requests_total"] == requests_before + 1
    ends = [e.data for e in events if e.type == "tool_end"]
    assert ends == [{"name": "record", "call_id": ends[0]["call_id"], "ok": False,
                     "error": UNKNOWN_OUTCOME}]  # fmt: skip
    assert f"Tool record returned {UNKNOWN_OUTCOME}" in text_of(events)
    assert [(c.step, c.kind, c.call_index) for c in second.checkpoints] == [
        (0, "tool_result", 1), (1, "model_turn", 0)]  # fmt: skip
    # The whole run's transcript and cost, the restored turn included.
    assert [m.role for m in agent.result.messages] == ["assistant", "user", "assistant"]
    assert agent.result.cost_usd > first.checkpoints[0].payload["cost_usd"]


async def test_resume_of_a_finished_step_does_not_call_the_model(
    anthropic_provider: Any, modelsim: Modelsim, tag: str
) -> None:
    history = [user_message("go", tools=[{"name": "echo", "args": {"text": "a"}}], tag=tag)]
    first = Harness()
    await first.drive(make_agent(first, {"anthropic": anthropic_provider}, history))
    step0 = [c for c in first.checkpoints if c.step == 0]
    second = Harness()
    agent = make_agent(second, {"anthropic": anthropic_provider}, history, restored=step0)
    assert agent.resume_step == 1
    events = await second.drive(agent)
    assert agent.result.status == "succeeded" and second.executed == []
    assert not [e for e in events if e.type in ("tool_start", "tool_end")]
    assert {e.data["step"] for e in events if e.type == "token"} == {1}
    assert (await modelsim.stats(tag))["requests_total"] == 3


async def test_step_budget(anthropic_provider: Any, modelsim: Modelsim, tag: str) -> None:
    h = Harness()
    tools = [{"name": "echo", "args": {"text": "again"}}]
    history = [user_message("loop", tools=tools, tool_rounds=-1, tag=tag)]
    agent = make_agent(h, {"anthropic": anthropic_provider}, history, step_budget=3)
    events = await h.drive(agent)
    assert agent.result.status == "failed"
    assert agent.result.error is not None
    assert agent.result.error["reason"] == "step_budget_exceeded"
    assert events[-1].type == "error" and events[-1].data["reason"] == "step_budget_exceeded"
    assert (await modelsim.stats(tag))["requests_total"] == 3
    assert len(h.executed) == 2  # the last turn's tools are not run: nobody would read them
    last = agent.result.messages[-1]
    assert last.role == "user" and last.content[0]["is_error"] is True


async def test_should_stop_cancels_and_closes_the_model_stream(
    anthropic_provider: Any, modelsim: Modelsim, tag: str
) -> None:
    h = Harness(stop_after_tokens=3)
    history = [user_message("long", tokens=500, token_delay_ms=5, tag=tag)]
    agent = make_agent(h, {"anthropic": anthropic_provider}, history)
    events = await h.drive(agent)
    assert agent.result.status == "cancelled" and agent.result.error is None
    assert [e.type for e in events].count("token") == 3
    assert agent.result.messages[0].content == [{"type": "text", "text": text_of(events)}]

    async def closed_early() -> bool:
        return (await modelsim.stats(tag))["streams_closed_early"] == 1

    await wait_for(closed_early, what="modelsim to see the stream closed early")


async def test_stop_before_the_first_step_calls_nothing(
    anthropic_provider: Any, modelsim: Modelsim, tag: str
) -> None:
    h = Harness(stop_reason="kill_switch")
    agent = make_agent(h, {"anthropic": anthropic_provider}, [user_message("hi", tag=tag)])
    events = await h.drive(agent)
    assert agent.result.status == "cancelled"
    assert agent.result.error is not None and agent.result.error["reason"] == "kill_switch"
    assert [e.type for e in events] == ["error"]
    assert (await modelsim.stats(tag))["requests_total"] == 0


async def test_stop_interrupts_a_long_tool(anthropic_provider: Any, tag: str) -> None:
    h = Harness(stop_on_tool_start=True)
    history = [user_message("wait", tools=[{"name": "wait", "args": {"seconds": 30}}], tag=tag)]
    agent = make_agent(h, {"anthropic": anthropic_provider}, history)
    events = await h.drive(agent)  # the test's timeout fails it if the wait is not cut short
    assert agent.result.status == "cancelled"
    assert [e.type for e in events][-2:] == ["tool_start", "tool_end"]
    result_block = agent.result.messages[-1].content[0]
    assert result_block["is_error"] and "interrupted" in result_block["content"]


async def test_retryable_errors_retry_then_fall_back(
    anthropic_provider: Any, modelsim: Modelsim, tag: str
) -> None:
    h = Harness()
    history = [user_message("hi", fail={"status": 529}, fail_times=2, tag=tag)]
    agent = make_agent(h, {"anthropic": anthropic_provider}, history)
    events = await h.drive(agent)
    assert agent.result.status == "succeeded"
    retries = [e.data for e in events if e.type == "step_retry"]
    assert [(r["step"], r["model"]) for r in retries] == [(0, "sim-default"), (0, "sim-fallback")]
    assert h.checkpoints[0].payload["model"] == "sim-fallback"
    spec = ModelCatalog.default().get("sim-fallback")
    payload = h.checkpoints[0].payload
    assert payload["cost_usd"] == cost_usd(spec, payload["input_tokens"], payload["output_tokens"])


async def test_mid_stream_error_retries_the_step(anthropic_provider: Any, tag: str) -> None:
    h = Harness()
    history = [user_message("hi", fail={"status": 529, "after_tokens": 3}, fail_times=1, tag=tag)]
    agent = make_agent(h, {"anthropic": anthropic_provider}, history)
    events = await h.drive(agent)
    types = [e.type for e in events]
    assert agent.result.status == "succeeded"
    assert types[:4] == ["token", "token", "token", "step_retry"]
    assert types.count("token") == 3 + 8


async def test_provider_errors_end_the_run(
    anthropic_provider: Any, modelsim: Modelsim, tag: str
) -> None:
    h = Harness()
    bad = [user_message("hi", fail={"status": 400, "type": "invalid_request_error"}, tag=tag)]
    agent = make_agent(h, {"anthropic": anthropic_provider}, bad)
    events = await h.drive(agent)
    assert agent.result.status == "failed" and "reason" not in (agent.result.error or {})
    assert "step_retry" not in [e.type for e in events]
    assert (await modelsim.stats(tag))["requests_total"] == 1

    h2 = Harness()
    down = [user_message("hi", fail={"status": 529}, tag=tag + "-down")]
    agent2 = make_agent(h2, {"anthropic": anthropic_provider}, down)
    events2 = await h2.drive(agent2)
    assert agent2.result.error is not None
    assert agent2.result.error["reason"] == "model_unavailable"
    assert [e.type for e in events2].count("step_retry") == 3  # 2 tries on each of 2 models
    assert events2[-1].type == "error"


async def test_cost_ceiling(anthropic_provider: Any, tag: str) -> None:
    h = Harness()
    history = [user_message("loop", tools=[{"name": "echo", "args": {"text": "x"}}],
                            tool_rounds=-1, tag=tag)]  # fmt: skip
    agent = make_agent(h, {"anthropic": anthropic_provider}, history, max_cost_usd=1e-9)
    await h.drive(agent)
    assert agent.result.status == "failed"
    assert agent.result.error is not None
    assert agent.result.error["reason"] == "cost_budget_exceeded"
    assert agent.result.steps == 1


async def test_a_failing_checkpoint_stops_the_loop(anthropic_provider: Any, tag: str) -> None:
    h = Harness()

    async def refuse(step: int, kind: str, call_index: int, payload: dict[str, Any]) -> None:
        raise RuntimeError("stale attempt")

    history = [user_message("go", tools=[{"name": "record", "args": {"value": "v"}}], tag=tag)]
    agent = make_agent(h, {"anthropic": anthropic_provider}, history)
    agent.inputs.checkpoint = refuse
    with pytest.raises(RuntimeError, match="stale attempt"):
        await h.drive(agent)
    assert h.executed == []


async def test_openai_provider_text_and_tools(openai_provider: Any, tag: str) -> None:
    h = Harness()
    tools = [{"name": "calculator", "args": {"expression": "6*7"}}]
    agent = make_agent(
        h,
        {"openai": openai_provider},
        [user_message("go", tools=tools, tag=tag)],
        model="sim-openai",
    )
    events = await h.drive(agent)
    assert agent.result.status == "succeeded"
    assert "Tool calculator returned 42." in text_of(events)
    usage = [e.data for e in events if e.type == "usage"]
    assert len(usage) == 2 and all(u["input_tokens"] > 0 and u["output_tokens"] > 0 for u in usage)
    first = agent.result.messages[0].content
    assert first[0]["type"] == "tool_use" and first[0]["input"] == {"expression": "6*7"}


async def test_a_missing_provider_is_model_unavailable(tag: str) -> None:
    h = Harness()
    agent = make_agent(h, {}, [user_message("hi", tag=tag)])
    await h.drive(agent)
    assert agent.result.status == "failed"
    assert agent.result.error is not None and agent.result.error["reason"] == "model_unavailable"


class RecordingGate:
    def __init__(self, closed: set[str]) -> None:
        self.closed = closed
        self.records: list[tuple[str, bool]] = []

    async def allow(self, spec: ModelSpec) -> bool:
        return spec.name not in self.closed

    async def record(self, spec: ModelSpec, *, ok: bool) -> None:
        self.records.append((spec.name, ok))


async def test_an_open_circuit_skips_the_model_without_calling_it(
    anthropic_provider: Any, modelsim: Modelsim, tag: str
) -> None:
    h = Harness()
    gate = RecordingGate({"sim-default"})
    agent = make_agent(
        h, {"anthropic": anthropic_provider}, [user_message("hi", tag=tag)], gate=gate
    )
    events = await h.drive(agent)
    assert agent.result.status == "succeeded"
    assert "step_retry" not in [e.type for e in events]
    assert h.checkpoints[0].payload["model"] == "sim-fallback"
    assert gate.records == [("sim-fallback", True)]
    assert (await modelsim.stats(tag))["requests_total"] == 1

    h2 = Harness()
    every = RecordingGate({"sim-default", "sim-fallback"})
    down = make_agent(
        h2, {"anthropic": anthropic_provider}, [user_message("hi", tag=tag)], gate=every
    )
    await h2.drive(down)
    assert down.result.error is not None and down.result.error["reason"] == "model_unavailable"
    assert (await modelsim.stats(tag))["requests_total"] == 1  # nothing more was called


async def test_the_gate_hears_failures_but_not_client_errors(
    anthropic_provider: Any, tag: str
) -> None:
    gate = RecordingGate(set())
    flaky = [user_message("hi", fail={"status": 529}, fail_times=1, tag=tag)]
    await Harness().drive(
        make_agent(Harness(), {"anthropic": anthropic_provider}, flaky, gate=gate)
    )
    assert gate.records == [("sim-default", False), ("sim-default", True)]
    gate.records.clear()
    bad = [user_message("hi", fail={"status": 400, "type": "invalid_request_error"}, tag=tag)]
    h = Harness()
    await h.drive(make_agent(h, {"anthropic": anthropic_provider}, bad, gate=gate))
    assert gate.records == []
