"""Terminal output: the answer on stdout, everything else on stderr.

Why two streams: `relay chat "..." > answer.txt` must capture only the
model's text, while a person at the terminal still sees tool calls, status,
reconnects and the cost summary. `--json` prints JSON only, on stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def write(text: str) -> None:
    """Answer text as it streams: raw, no markup, flushed at once."""
    sys.stdout.write(text)
    sys.stdout.flush()


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def emit_json(value: Any) -> None:
    """One JSON document (a line) on stdout."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


def note(text: str, style: str = "dim") -> None:
    err.print(text, style=style, markup=False)


def fail(text: str) -> None:
    err.print(f"error: {text}", style="bold red", markup=False)
