"""The clients' tests: the SDK, the `relay` CLI and the web console against one
real stack (every service a process, real Redis and Postgres), as a user
would drive them.

One stack for the folder (starting one costs seconds on a small machine).
Its interactive runner keeps a finished run's events for only
`RETENTION_S`, so a `resync` can be reached in a test; background runs keep
the default (the kill -9 test replays its run after the end). The tests may
stop and restart the events service, never leave it down.

Figures (reconnects, time to resume...) are printed at the end of the
session and written with the console's screenshot to the output folder:
`$RELAY_TEST_OUTPUT_DIR`, else `.relay/test-output/clients/`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay_devstack.harness import start_test_stack
from relay_devstack.stack import Stack
from tests.clients.kit import FIGURES, KEYS_USED, RETENTION_S

ROOT = Path(__file__).resolve().parents[2]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("clients figures")
    for scenario, values in FIGURES.items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{scenario}: {shown}")


@pytest.fixture(scope="session")
def output_dir() -> Path:
    path = Path(os.environ.get("RELAY_TEST_OUTPUT_DIR") or ROOT / ".relay/test-output/clients")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="package")
def clients_stack(output_dir: Path) -> Iterator[Stack]:
    stack = start_test_stack(
        {
            "runner-interactive": {"RELAY_EVENTS_RETENTION_S": str(RETENTION_S)},
            "gateway": {"RELAY_RATE_LIMIT_PER_MIN": "100000"},
        }
    )
    try:
        yield stack
    finally:
        stack.stop()
        (output_dir / "figures.json").write_text(json.dumps(FIGURES, indent=2))
        shutil.rmtree(stack.config.data_dir, ignore_errors=True)


@pytest.fixture
def user_key(clients_stack: Stack) -> str:
    key = clients_stack.new_key(f"client-{uuid.uuid4().hex[:10]}")
    KEYS_USED.add(key)
    return key


@pytest.fixture
def admin_key(clients_stack: Stack) -> str:
    KEYS_USED.add(clients_stack.admin_key)
    return clients_stack.admin_key
