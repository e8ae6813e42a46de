"""The dashboards and alerts against a real Prometheus scraping a running stack.

test_observability.py checks every query's syntax and names offline; here
Debian's Prometheus (tests/deploy/prometheus.py) scrapes the shared test
stack while it runs a small load (background runs with a tool call, a
rate-limited burst is not needed: every counter the panels read exists),
then evaluates every Grafana panel and variable query and every alert
expression through its HTTP API. Each must be accepted by the engine, and
every panel of the overview dashboard must return data. The alert rules, as
the chart renders them, pass `promtool check rules`, and `promtool test rules`
runs the unit tests of the three alerts an SRE is paged for first
(tests/deploy/promtool/: queue lag growing, circuit breaker open, cost burn).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from relay_devstack.harness import wait_for
from relay_devstack.stack import Stack
from tests.deploy import observability as obs
from tests.deploy.chart import CHART_DIR, render_values
from tests.deploy.prometheus import Prometheus, promtool, running_prometheus, scrape_jobs

DASHBOARDS = sorted((CHART_DIR / "dashboards").glob("*.json"))
OVERVIEW = CHART_DIR / "dashboards" / "relay-overview.json"
PROMTOOL_TESTS = Path(__file__).parent / "promtool"
RULES_ON = {"observability": {"prometheusRule": {"enabled": True}}}
VARIABLES = {"$namespace": "relay", "$pool": "background"}
RUNS = 6


def grafana(expr: str) -> str:
    """A panel query as Grafana would send it: variables and intervals filled in."""
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return obs.grafana_to_promql(expr)


def rule_groups() -> dict[str, Any]:
    """The chart's alert rules as a plain Prometheus rule file."""
    (rule_object,) = render_values(RULES_ON, label="rules").of_kind("PrometheusRule")
    return {"groups": rule_object["spec"]["groups"]}


def load(stack: Stack) -> None:
    """A few runs with a tool call, followed to their end through the public API."""
    key = stack.new_key(f"prom-{uuid.uuid4().hex[:8]}")
    headers = {"Authorization": f"Bearer {key}"}
    sim = {"tools": [{"name": "calculator", "args": {"expression": "6*7"}}], "tokens": 8}
    message = f"What is 6*7?\n#sim {json.dumps(sim)}"
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=10) as http:
        ids = []
        for _ in range(RUNS):
            resp = http.post("/v1/runs", json={"message": message})
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["run_id"])

        def succeeded(run_id: str) -> bool:
            return bool(http.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded")

        for run_id in ids:
            wait_for(partial(succeeded, run_id), timeout_s=60, what=f"run {run_id} to succeed")
        http.get("/v1/runs", params={"limit": 5})


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> Iterator[Prometheus]:
    with running_prometheus(scrape_jobs(stack)) as prom:
        wait_for(
            lambda: (up := prom.targets_up()) and set(up.values()) == {"up"} and up,
            timeout_s=30,
            what="every scrape target up",
        )
        load(stack)
        # The load's counters in at least two scrapes after it ended, so rate() sees them.
        wait_for(
            lambda: (
                prom.query("sum(relay_runner_tool_calls_total)")["result"]
                and prom.query("min(count_over_time(relay_runner_tool_calls_total[1m]))")["result"][
                    0
                ]["value"][1]
                not in ("0", "1")
            ),
            timeout_s=30,
            what="the load's counters scraped twice",
        )
        time.sleep(2.5)  # two more scrapes: a rate over the window ends after the load
        yield prom


def dashboard_targets(path: Path) -> list[tuple[str, str]]:
    return [
        (where, grafana(expr))
        for where, expr in obs.dashboard_queries(json.loads(path.read_text()))
    ]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_query_runs(prometheus: Prometheus, path: Path) -> None:
    problems = []
    for where, expr in dashboard_targets(path):
        try:
            prometheus.query(expr)
        except AssertionError as exc:
            problems.append(f"{where}: {exc}\n    {expr}")
    assert not problems, "\n".join(problems)


def test_overview_panels_show_data(prometheus: Prometheus) -> None:
    empty = [
        f"{where}: {expr}"
        for where, expr in dashboard_targets(OVERVIEW)
        if not prometheus.query(expr)["result"]
    ]
    assert not empty, "overview panels with no data under load:\n" + "\n".join(empty)


def test_every_alert_expression_runs(prometheus: Prometheus) -> None:
    problems = []
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            try:
                prometheus.query(rule["expr"])
            except AssertionError as exc:
                problems.append(f"{rule['alert']}: {exc}")
    assert not problems, "\n".join(problems)


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    (tmp_path / "relay-rules.yaml").write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    result = promtool("check", "rules", "relay-rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_three_first_alerts_pass_their_unit_tests(tmp_path: Path) -> None:
    """queue lag growing, breaker open, cost burn: fire when they should, not before."""
    # Annotations are the subject of test_observability.py; promtool compares
    # them whole, so the unit tests see the rules without them.
    groups = rule_groups()
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "relay-rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    tests = sorted(PROMTOOL_TESTS.glob("*.yaml"))
    assert {t.stem for t in tests} >= {"queue_backlog", "circuit_breaker", "cost_burn"}
    for test in tests:
        shutil.copy(test, tmp_path / test.name)
    result = promtool("test", "rules", *(t.name for t in tests), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
