"""What the clients' tests share besides fixtures (kept out of conftest.py so
every module sees one `FIGURES`, the one the summary prints)."""

from __future__ import annotations

import json
from typing import Any

RETENTION_S = 2  # the interactive runner's event retention on the clients' stack
FIGURES: dict[str, dict[str, Any]] = {}
# Every API key the tests used: none may appear in a URL or a log line.
KEYS_USED: set[str] = set()


def record_figures(scenario: str, **values: Any) -> None:
    FIGURES[scenario] = {k: round(v, 2) if isinstance(v, float) else v for k, v in values.items()}


def sim(text: str, **directive: Any) -> str:
    """A user message steering modelsim with a `#sim` directive."""
    return f"{text}\n#sim {json.dumps(directive)}"
