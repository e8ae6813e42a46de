"""The Redis Cluster suite's own tests (`make test-redis-cluster`, which sets
`RELAY_TEST_REDIS_CLUSTER`): collected only there, so `make test` stays as fast.

`cluster_stack` is the whole Relay stack on a local 3-primary + 3-replica
cluster (relay_devstack.rediscluster), with the chaos suite's tools (its
non-idempotent `ledger` records every execution in a file) and runners sized
for the failover scenario.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay_devstack.harness import stack_data_dir, start_test_stack
from relay_devstack.rediscluster import CLUSTER_ENV, cluster_wanted
from tests.chaos.kit import FIGURES, ChaosStack
from tests.chaos.tools_plugin import LEDGER_ENV

CHAOS = Path(__file__).parent.parent / "chaos"

if not cluster_wanted(os.environ.get(CLUSTER_ENV)):
    collect_ignore_glob = ["test_*.py"]

RUNNER_ENV = {"RELAY_LEASE_TTL_S": "10"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test shows every service's errors and keeps the stack's folder."""
    report = yield
    chaos = item.funcargs.get("cluster_stack") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(chaos, ChaosStack):
        chaos.keep = True
        report.sections.append(("cluster stack folder (kept)", str(chaos.stack.config.data_dir)))
        for name in chaos.stack.children:
            errors = chaos.errors(name)
            if errors:
                report.sections.append((f"errors of {name}", "\n".join(errors[-20:])))
    return report


def pytest_terminal_summary(terminalreporter: object) -> None:
    if not FIGURES:
        return
    terminalreporter.section("cluster figures")  # type: ignore[attr-defined]
    for scenario, values in FIGURES.items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{scenario}: {shown}")  # type: ignore[attr-defined]


@pytest.fixture(scope="package")
def cluster_stack() -> Iterator[ChaosStack]:
    data_dir = stack_data_dir("relay-cluster-")
    ledger_path = data_dir / "tool-ledger.jsonl"
    overrides = {
        "runner": {
            "PYTHONPATH": str(CHAOS),
            "RELAY_EXTRA_TOOLS": "tools_plugin:tools",
            LEDGER_ENV: str(ledger_path),
            "RELAY_BLOCK_MS": "250",
            **RUNNER_ENV,
        },
        "runner-background": {"RELAY_RUNNER_CONCURRENCY": "60"},
        "runner-interactive": {"RELAY_RUNNER_CONCURRENCY": "25"},
        "state": {"RELAY_RECONCILE_INTERVAL_S": "1", "RELAY_RECONCILE_MIN_AGE_S": "2"},
        "gateway": {"RELAY_RATE_LIMIT_PER_MIN": "1000000", "RELAY_MAX_CONCURRENT_RUNS": "1000"},
        # A stream open counts against the same per-key limit (issue 17): the
        # events service's must match the gateway's, or the 70 followers and
        # their resumes after the kill are refused 429 by the lower one.
        "events": {"RELAY_RATE_LIMIT_PER_MIN": "1000000"},
    }
    try:
        stack = start_test_stack(overrides, data_dir=data_dir, redis_cluster=True)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    chaos = ChaosStack(stack, ledger_path)
    try:
        yield chaos
    finally:
        stack.stop()
        if not chaos.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
