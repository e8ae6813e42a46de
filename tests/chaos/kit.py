"""What the chaos tests share besides fixtures: the stack handle and the figures.

Kept out of conftest.py so that test modules import one module object (the
figures they record are the ones the summary prints).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from relay_devstack.stack import Stack

# Scenario -> figures (runs, seconds to recover, duplicates...), printed at the end.
FIGURES: dict[str, dict[str, Any]] = {}

StartRunner = Callable[..., list[str]]


def record_figures(scenario: str, **values: Any) -> None:
    """Keep a scenario's figures for the summary (floats rounded to 0.1)."""
    FIGURES[scenario] = {k: round(v, 1) if isinstance(v, float) else v for k, v in values.items()}


@dataclass
class ChaosStack:
    stack: Stack
    ledger_path: Path
    keep: bool = False  # keep the folder (logs, data) after a failure

    def errors(self, name: str) -> list[str]:
        """The ERROR lines of a service's log (JSON lines, tracebacks included)."""
        try:
            text = self.stack.log_path(name).read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if '"level": "ERROR"' in line]

    def ledger(self, run_ids: set[str] | None = None) -> list[dict[str, Any]]:
        """Every tool execution recorded so far (optionally: of these runs only)."""
        if not self.ledger_path.exists():
            return []
        rows = [json.loads(line) for line in self.ledger_path.read_text().splitlines() if line]
        return [r for r in rows if run_ids is None or r["run_id"] in run_ids]

    def new_key(self) -> str:
        return self.stack.new_key(f"chaos-{uuid.uuid4().hex[:10]}")

    def runner_url(self, name: str) -> str:
        return self.stack.management_url(name)  # a runner has no other port

    def runner_metric(self, name: str, metric: str, **labels: str) -> float:
        """A counter or gauge of one runner process (its /metrics), summed over labels."""
        text = httpx.get(self.runner_url(name) + "/metrics", timeout=5).text
        return metric_value(text, metric, **labels)

    def in_flight(self, name: str) -> int:
        """Runs a runner executes now (its /healthz)."""
        return int(httpx.get(self.runner_url(name) + "/healthz", timeout=5).json()["in_flight"])

    def state_metric(self, metric: str, **labels: str) -> float:
        text = httpx.get(self.stack.management_url("state") + "/metrics", timeout=5).text
        return metric_value(text, metric, **labels)

    def modelsim_stats(self, tag: str) -> dict[str, Any]:
        resp = httpx.get(self.stack.modelsim_url + "/admin/stats", params={"tag": tag}, timeout=5)
        resp.raise_for_status()
        return dict(resp.json())


def metric_value(text: str, metric: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
