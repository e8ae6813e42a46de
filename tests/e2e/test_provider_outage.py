"""A provider outage: the shared breaker opens, runs finish on the fallback model,
a failure in the middle of a stream is announced with `step_retry`, and the
breaker closes once the primary is healthy again.

Faults come from modelsim's `PUT /admin/faults` (error rate 100% on the primary
model only); the breaker's state is read from the runner's `/metrics`
(`relay_runner_breaker_state`), as an SRE's dashboard would.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from relay_devstack.harness import wait_for
from tests.e2e.sse import read_events, token_text

PRIMARY = "sim-default"  # its fallback chain is [sim-fallback]


@pytest.fixture(scope="module")
def outage_stack(stack_factory: Any) -> Any:
    return stack_factory(
        overrides={
            "runner": {
                "RELAY_BREAKER_MIN_CALLS": "3",
                "RELAY_BREAKER_FAILURE_RATE": "0.5",
                "RELAY_BREAKER_OPEN_S": "2",
            }
        }
    )


def breaker_state(stack: Any) -> float | None:
    text = httpx.get(f"{stack.url('runner-background')}/metrics").text
    labels = re.escape(f'{{model="{PRIMARY}",provider="anthropic"}}')
    pattern = r"relay_runner_breaker_state" + labels + r" (\S+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else None


def run_to_done(stack: Any, key: str, message: str) -> list[Any]:
    resp = httpx.post(
        f"{stack.gateway_url}/v1/runs",
        json={"message": message, "model": PRIMARY},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status_code == 202, resp.text
    return read_events(resp.json()["events_url"], key)


def test_outage_opens_the_breaker_and_runs_finish_on_the_fallback(outage_stack: Any) -> None:
    key = outage_stack.new_key(f"outage-{uuid.uuid4().hex[:6]}")
    sim = outage_stack.modelsim_url
    faults = httpx.put(f"{sim}/admin/faults", json={"error_rate": 1.0, "models": [PRIMARY]})
    assert faults.status_code == 200, faults.text
    try:
        for i in range(5):
            events = run_to_done(outage_stack, key, f'outage {i}\n#sim {{"tokens": 4}}')
            assert events[-1].data["status"] == "succeeded", events[-3:]
        assert wait_for(
            lambda: breaker_state(outage_stack) == 2, timeout_s=10, what="the breaker to open"
        )
        before = httpx.get(f"{sim}/admin/stats").json()["by_model"][PRIMARY]["requests_total"]
        events = run_to_done(outage_stack, key, 'while open\n#sim {"tokens": 4}')
        assert events[-1].data["status"] == "succeeded"
        after = httpx.get(f"{sim}/admin/stats").json()["by_model"][PRIMARY]["requests_total"]
        assert after == before, "an open breaker fails fast: no call to the primary"
    finally:
        httpx.put(f"{sim}/admin/faults", json={"error_rate": 0.0})

    # Healthy again: after open_s a probe goes to the primary and closes the breaker.
    def closed() -> bool:
        run_to_done(outage_stack, key, 'probe\n#sim {"tokens": 2}')
        return breaker_state(outage_stack) == 0

    assert wait_for(closed, timeout_s=30, what="the breaker to close", interval_s=0.5)


def test_mid_stream_failure_emits_step_retry(outage_stack: Any) -> None:
    key = outage_stack.new_key(f"midstream-{uuid.uuid4().hex[:6]}")
    tag = uuid.uuid4().hex
    directive = (
        '{"tokens": 8, "fail": {"status": 529, "type": "overloaded_error", "after_tokens": 3},'
        f' "fail_times": 1, "tag": "{tag}"}}'
    )
    events = run_to_done(outage_stack, key, f"retry me\n#sim {directive}")
    kinds = [e.event for e in events]
    assert "step_retry" in kinds and kinds[-1] == "done"
    assert events[-1].data["status"] == "succeeded"
    retry_at = kinds.index("step_retry")
    assert kinds[:retry_at].count("token") == 3, "the failed attempt's partial text came first"
    # A client discards the step's partial text at step_retry: what it keeps is the answer.
    kept = token_text(events[retry_at + 1 :])
    resp = httpx.get(
        f"{outage_stack.gateway_url}/v1/runs/{events[0].data['run_id']}",
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    messages = httpx.get(
        f"{outage_stack.gateway_url}/v1/conversations/{resp['conversation_id']}/messages",
        headers={"Authorization": f"Bearer {key}"},
    ).json()["messages"]
    answer = "".join(
        b["text"] for m in messages if m["role"] == "assistant" for b in m["content"]
        if b.get("type") == "text"
    )  # fmt: skip
    assert answer == kept
