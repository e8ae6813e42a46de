"""The chaos suite's stack: every Relay process, real Redis and Postgres, on free ports.

One stack serves the whole folder (`chaos_stack`, package scope): starting
one costs seconds on a small machine, and what the scenarios need to vary is
the RUNNERS' environment (lease TTL, drain deadline, deliveries, retention),
which each module sets on runner processes of its own (`runners`). The
stack's own background runner is stopped at once so that every run of a
scenario executes on the runners that scenario controls. Settings that must
hold for the whole stack:

- state reconciles every second and re-enqueues runs older than 2 s (the
  Redis-loss scenario), the production defaults being 10 s and 5 s;
- the gateway's per-key rate and concurrency limits are lifted: the
  scenarios submit and poll hundreds of times a minute from one key;
- runners load `tools_plugin` (this folder on their PYTHONPATH), whose
  non-idempotent `ledger` tool appends every execution to `ledger_path`.

Modules that stop Redis or Postgres bring them back in their own teardown, so
a failure in one scenario does not cascade into the next.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay_devstack.harness import stack_data_dir, start_test_stack
from tests.chaos.kit import FIGURES, ChaosStack, StartRunner
from tests.chaos.tools_plugin import LEDGER_ENV

HERE = Path(__file__).parent
DEFAULT_RUNNER = "runner-background"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed chaos test shows every service's errors and last log lines, and
    keeps the stack's folder (logs, data) for a post-mortem."""
    report = yield
    chaos = item.funcargs.get("chaos_stack") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(chaos, ChaosStack):
        chaos.keep = True
        report.sections.append(("chaos stack folder (kept)", str(chaos.stack.config.data_dir)))
        for name in [*chaos.stack.children, "redis", "postgres"]:
            errors = chaos.errors(name)
            if errors:
                report.sections.append((f"errors of {name}", "\n".join(errors[-20:])))
            report.sections.append((f"log of {name}", chaos.stack.log_tail(name, 25)))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("chaos figures")
    for scenario, values in FIGURES.items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{scenario}: {shown}")


@pytest.fixture(scope="package")
def chaos_stack() -> Iterator[ChaosStack]:
    data_dir = stack_data_dir("relay-chaos-")
    ledger_path = data_dir / "tool-ledger.jsonl"
    overrides = {
        "runner": {
            "PYTHONPATH": str(HERE),
            "RELAY_EXTRA_TOOLS": "tools_plugin:tools",
            LEDGER_ENV: str(ledger_path),
            "RELAY_BLOCK_MS": "250",
        },
        "state": {"RELAY_RECONCILE_INTERVAL_S": "1", "RELAY_RECONCILE_MIN_AGE_S": "2"},
        "gateway": {"RELAY_RATE_LIMIT_PER_MIN": "1000000", "RELAY_MAX_CONCURRENT_RUNS": "1000"},
    }
    try:
        stack = start_test_stack(overrides, data_dir=data_dir)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    chaos = ChaosStack(stack, ledger_path)
    try:
        stack.stop_service(DEFAULT_RUNNER)
        yield chaos
    finally:
        stack.stop()
        if not chaos.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def runners(chaos_stack: ChaosStack, request: pytest.FixtureRequest) -> Iterator[StartRunner]:
    """`runners("a", "b", RELAY_LEASE_TTL_S="3")` starts background runners of this
    module (named `<module>-a`...) at once, waits until all are ready and returns
    their names; a runner of that name still running is kept, a dead one is
    started again. All are stopped at module end."""
    stack = chaos_stack.stack
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    started: list[str] = []

    def start(*suffixes: str, **env: str) -> list[str]:
        names = [f"{prefix}-{suffix}" for suffix in suffixes]
        for name in names:
            child = stack.children.get(name)
            if child is not None and child.alive():
                continue  # running already (an earlier test of the module started it)
            if name in stack.specs:
                stack.start_service(name, env=env, wait=False)
            else:
                stack.start_extra_runner("background", name, env=env, wait=False)
            if name not in started:
                started.append(name)
        stack.wait_ready(names, timeout_s=stack.config.ready_timeout_s)
        return names

    yield start
    for name in started:
        child = stack.children.get(name)
        if child is not None and child.alive():
            stack.stop_service(name)
