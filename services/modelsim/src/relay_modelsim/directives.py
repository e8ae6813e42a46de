"""The `#sim {json}` directive: per-request control of a simulated reply.

A test puts one line such as

    #sim {"tokens": 5, "tools": [{"name": "calculator", "args": {"expression": "2+2"}}]}

in a user message. Decisions:

- Unknown keys are rejected (`extra="forbid"`), and so is malformed JSON: a typo
  in a test's directive should fail loudly as a 400, not silently fall back to
  defaults and make the test pass for the wrong reason.
- If a message holds several directive lines the last one wins, so a caller can
  append an override to a message that already carries one.
- `fingerprint()` identifies a directive for `fail_times`: the canonical JSON of
  the parsed directive (which includes its `tag`), so two tests that want
  "fail twice" counters of their own just use different tags.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "Directive",
    "DirectiveError",
    "FailSpec",
    "ToolSpec",
    "describe_errors",
    "find_directive",
    "fingerprint",
]

_LINE = re.compile(r"^[ \t]*#sim(?:[ \t]+(?P<body>.*?))?[ \t]*$", re.MULTILINE)


class DirectiveError(ValueError):
    """A `#sim` line that is not valid JSON or does not match `Directive`."""


class ToolSpec(BaseModel):
    """One tool call the simulated model makes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)


class FailSpec(BaseModel):
    """An injected provider error: up front, or after `after_tokens` tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int = Field(default=529, ge=400, le=599)
    type: str = Field(default="overloaded_error", min_length=1)
    after_tokens: int = Field(default=0, ge=0)
    message: str | None = None


class Directive(BaseModel):
    """Everything a `#sim` line may say; unset fields fall back to Settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int | None = Field(default=None, ge=0)
    token_delay_ms: float | None = Field(default=None, ge=0)
    ttft_ms: float | None = Field(default=None, ge=0)
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_rounds: int = Field(default=1, ge=-1, description="-1 calls the tools forever")
    fail: FailSpec | None = None
    fail_times: int | None = Field(default=None, ge=1)
    tag: str | None = Field(default=None, min_length=1)


def find_directive(text: str) -> Directive | None:
    """Parse the last `#sim` line of `text`, or return None when there is none."""
    matches = list(_LINE.finditer(text))
    if not matches:
        return None
    body = (matches[-1].group("body") or "").strip()
    if not body:
        raise DirectiveError("#sim directive needs a JSON object after '#sim'")
    try:
        raw = json.loads(body)
    except json.JSONDecodeError as exc:
        raise DirectiveError(f"#sim directive is not valid JSON: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise DirectiveError("#sim directive must be a JSON object")
    try:
        return Directive.model_validate(raw)
    except ValidationError as exc:
        raise DirectiveError(f"invalid #sim directive: {describe_errors(exc)}") from exc


def fingerprint(directive: Directive) -> str:
    """A stable hash of the directive (tag included), the key of `fail_times`."""
    canonical = json.dumps(directive.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def describe_errors(exc: ValidationError) -> str:
    """Pydantic errors as one short line: `field.path: message; ...`."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
