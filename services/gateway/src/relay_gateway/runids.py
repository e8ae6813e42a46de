"""Run ids minted by the gateway, so a run can be admitted before it exists.

The gateway takes a run's slots (the user's active runs, the interactive pool)
under the run's id BEFORE state records it, so the id is minted here and
handed to state (`CreateRunIn.run_id`). The format is state's own (`run_` and
32 hex digits, `relay_core.state_api.RUN_ID_PATTERN`); the first 12 digits are
the minting time in milliseconds, like a UUIDv7, and the rest are random (80
bits). The time lets the leak repair of the active-runs set tell an id whose
run was never created (a gateway died between taking the slot and creating
the run) from one whose creation is still in flight.
"""

from __future__ import annotations

import re
import secrets
import time

from relay_core.state_api import RUN_ID_PATTERN

_PATTERN = re.compile(RUN_ID_PATTERN)


def new_run_id(now_s: float | None = None) -> str:
    millis = int((time.time() if now_s is None else now_s) * 1000)
    return f"run_{millis & 0xFFFFFFFFFFFF:012x}{secrets.token_hex(10)}"


def minted_at(run_id: str) -> float | None:
    """When a gateway minted this id (epoch seconds), or None if it has no such time."""
    if not _PATTERN.fullmatch(run_id):
        return None
    return int(run_id[4:16], 16) / 1000
