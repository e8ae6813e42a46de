"""The kill switch under load: new runs get 503 `kill_switch`, runs in flight stop
at their next step with an `error` event of reason `kill_switch`, and turning
it off lets runs through again."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from relay_devstack.harness import wait_for
from tests.e2e.sse import read_events

SLOW = 'slow\n#sim {"tokens": 400, "token_delay_ms": 20}'


@pytest.fixture(scope="module")
def ks_stack(stack_factory: Any) -> Any:
    return stack_factory(overrides={"gateway": {"RELAY_KILL_SWITCH_REFRESH_S": "0.2"}})


def set_kill_switch(stack: Any, enabled: bool) -> None:
    resp = httpx.put(
        f"{stack.gateway_url}/v1/admin/kill-switch",
        json={"enabled": enabled},
        headers={"Authorization": f"Bearer {stack.admin_key}"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["enabled"] is enabled


def test_kill_switch_stops_new_and_running_runs(ks_stack: Any) -> None:
    key = ks_stack.new_key(f"ks-{uuid.uuid4().hex[:6]}")
    auth = {"Authorization": f"Bearer {key}"}
    gw = ks_stack.gateway_url
    runs = [
        httpx.post(f"{gw}/v1/runs", json={"message": SLOW}, headers=auth).json() for _ in range(10)
    ]

    def running() -> bool:
        statuses = [httpx.get(f"{gw}/v1/runs/{r['run_id']}", headers=auth).json() for r in runs]
        return sum(s["status"] == "running" for s in statuses) >= 3

    wait_for(running, timeout_s=30, what="runs to be in flight", interval_s=0.2)
    set_kill_switch(ks_stack, True)
    try:
        refused = httpx.post(f"{gw}/v1/runs", json={"message": "new"}, headers=auth)
        assert refused.status_code == 503
        assert refused.json()["error"]["reason"] == "kill_switch"
        health = httpx.get(ks_stack.management_url("gateway") + "/healthz").json()
        assert health["kill_switch"] is True

        for run in runs:
            events = read_events(run["events_url"], key, timeout_s=60)
            assert events[-1].event == "done", run
            errors = [e for e in events if e.event == "error"]
            assert errors and errors[-1].data.get("reason") == "kill_switch", events[-3:]
            assert events[-1].data["status"] != "succeeded"
    finally:
        set_kill_switch(ks_stack, False)

    again = httpx.post(f"{gw}/v1/runs", json={"message": 'ok\n#sim {"tokens": 2}'}, headers=auth)
    assert again.status_code == 202, again.text
    assert read_events(again.json()["events_url"], key)[-1].data["status"] == "succeeded"
