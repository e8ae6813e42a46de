"""Checkpoints of a running run, fenced by the attempt number.

A checkpoint is accepted only from the run's current attempt: the check reads
`runs.attempts` under `FOR SHARE` in the same transaction as the insert, so a
claim (which updates that row) cannot slip between the check and the write.
The first write of a (step, kind, call_index) wins; writing it again answers
"already stored" — that is what makes a non-idempotent tool call run once even
across attempts.

The answer says whether a cancel is recorded for the run: runners checkpoint
every step, so a cancel whose Redis flag was lost (Redis down when it was
asked for) still stops the run within a step.
"""

from __future__ import annotations

import asyncpg

from relay_core.errors import ApiError
from relay_core.events import TERMINAL_STATUSES
from relay_core.state_api import CheckpointIn, CheckpointOut
from relay_state import ids, rows
from relay_state.db import Database


def stale_attempt(attempt: int, current: int) -> ApiError:
    return ApiError(
        409,
        f"attempt {attempt} is stale: the run is at attempt {current}",
        type_="stale_attempt",
    )


def terminal(status: str) -> ApiError:
    return ApiError(409, f"the run is already {status}", type_="terminal")


async def for_run(*, conn: asyncpg.Connection, run_id: str) -> list[CheckpointOut]:
    found = await conn.fetch(
        """
        SELECT * FROM run_checkpoints
        WHERE run_id = $1 ORDER BY step, kind, call_index
        """,
        run_id,
    )
    return [rows.checkpoint_out(r) for r in found]


async def write_checkpoint(
    *, db: Database, run_id: str, cp: CheckpointIn
) -> tuple[CheckpointOut, bool]:
    """The stored checkpoint, and whether it was stored now (False: it already was)."""
    ids.require(run_id, "run")
    async with db.transaction() as conn:
        run = await conn.fetchrow(
            "SELECT status, attempts, cancel_requested_at FROM runs WHERE id = $1 FOR SHARE",
            run_id,
        )
        if run is None:
            raise ids.not_found("run")
        if cp.attempt != run["attempts"]:
            raise stale_attempt(cp.attempt, run["attempts"])
        if run["status"] in TERMINAL_STATUSES:
            raise terminal(run["status"])
        inserted = await conn.fetchval(
            """
            INSERT INTO run_checkpoints (run_id, attempt, step, kind, call_index, payload)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (run_id, step, kind, call_index) DO NOTHING
            RETURNING id
            """,
            run_id,
            cp.attempt,
            cp.step,
            cp.kind,
            cp.call_index,
            cp.payload,
        )
        stored = await conn.fetchrow(
            """
            SELECT * FROM run_checkpoints
            WHERE run_id = $1 AND step = $2 AND kind = $3 AND call_index = $4
            """,
            run_id,
            cp.step,
            cp.kind,
            cp.call_index,
        )
    out = rows.checkpoint_out(stored)
    out.cancel_requested = run["cancel_requested_at"] is not None
    return out, inserted is not None
