"""Tools the chaos tests lend to every runner (`RELAY_EXTRA_TOOLS=tools_plugin:tools`).

Runners import this file as the top-level module `tools_plugin` (their
PYTHONPATH is this folder), so it imports nothing from the tests package.

- `ledger` is NOT idempotent: each execution appends one JSON line to the
  file named by `CHAOS_LEDGER` with O_APPEND and fsync before it returns
  (then holds for `hold_s`, so a runner can be killed after the effect and
  before the result is recorded). The file is the ground truth of how many
  times each call really ran, across runner processes and crashes.
- `crash` kills its own runner process (SIGKILL) after logging that it ran:
  a poison run that takes down every runner that picks it up (idempotent, so
  each new attempt really runs it again).
- `block` sleeps WITHOUT yielding: the runner's event loop is frozen, as a
  badly written tool would freeze it, and only the heartbeat thread can keep
  the lease alive meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

from relay_agent.tools import Tool, ToolContext

LEDGER_ENV = "CHAOS_LEDGER"


def append_ledger(record: dict[str, Any]) -> None:
    """One line, one write(2) on an O_APPEND descriptor, fsynced: durable and atomic."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _record(kind: str, args: dict[str, Any], ctx: ToolContext) -> None:
    append_ledger(
        {
            "kind": kind,
            "run_id": ctx.run_id,
            "key": getattr(ctx, "dedupe_key", "") or "",
            "note": str(args.get("note", "")),
            "pid": os.getpid(),
        }
    )


async def _ledger(args: dict[str, Any], ctx: ToolContext) -> str:
    _record("ledger", args, ctx)
    await asyncio.sleep(float(args.get("hold_s", 0)))
    return f"recorded {args['note']}"


async def _crash(args: dict[str, Any], ctx: ToolContext) -> str:
    _record("crash", args, ctx)
    os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.sleep(60)  # never reached
    return "unreachable"


async def _block(args: dict[str, Any], ctx: ToolContext) -> str:
    time.sleep(float(args["seconds"]))  # freezes the event loop on purpose
    return f"blocked {args['seconds']} seconds"


def tools() -> list[Tool]:
    ledger_schema = {
        "type": "object",
        "properties": {
            "note": {"type": "string", "maxLength": 200},
            "hold_s": {"type": "number", "minimum": 0, "maximum": 300},
        },
        "required": ["note"],
        "additionalProperties": False,
    }
    note_schema = {
        "type": "object",
        "properties": {"note": {"type": "string", "maxLength": 200}},
        "additionalProperties": False,
    }
    block_schema = {
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 60}},
        "required": ["seconds"],
        "additionalProperties": False,
    }
    return [
        Tool("ledger", "Append a note to a durable ledger.", ledger_schema, _ledger, False),
        Tool("crash", "Kill the runner process (chaos tests).", note_schema, _crash, True),
        Tool("block", "Block the event loop (chaos tests).", block_schema, _block, True),
    ]
