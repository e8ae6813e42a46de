"""A tool plugin for the runner tests (`RELAY_EXTRA_TOOLS=runner_test_tools:tools`).

`record` is non-idempotent: it appends to a durable log (a file named by
`RELAY_TEST_RECORD_LOG`), so a test can count how many times it really ran,
across runner processes.
"""

from __future__ import annotations

import os
from typing import Any

from relay_agent.tools import Tool, ToolContext


async def _record(args: dict[str, Any], ctx: ToolContext) -> str:
    path = os.environ["RELAY_TEST_RECORD_LOG"]
    with open(path, "a", encoding="utf-8") as log:
        log.write(f"{ctx.run_id} {args['value']}\n")
        log.flush()
        os.fsync(log.fileno())
    return f"recorded {args['value']}"


def tools() -> list[Tool]:
    schema = {
        "type": "object",
        "properties": {"value": {"type": "string"}},
        "required": ["value"],
        "additionalProperties": False,
    }
    return [Tool("record", "Append a value to a durable log.", schema, _record, idempotent=False)]
