"""Checkpoints of a running run, fenced by the attempt number.

A checkpoint is accepted only from the run's current attempt: the check reads
`runs.attempts` under `FOR SHARE` in the same statement as the insert (one
round trip, its own transaction), so a claim (which updates that row) cannot
slip between the check and the write.
The first write of a (step, kind, call_index) wins; writing it again answers
"already stored" — that is what makes a non-idempotent tool call run once even
across attempts.

The answer says whether a cancel is recorded for the run: runners checkpoint
every step, so a cancel whose Redis flag was lost (Redis down when it was
asked for) still stops the run within a step.
"""

from __future__ import annotations

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


# The run's fencing facts and, only when the writer is the current attempt of a
# run still going, the insert. `inserted_id` is NULL when nothing was inserted.
WRITE = """
    WITH run AS (
        SELECT status, attempts, cancel_requested_at FROM runs WHERE id = $1 FOR SHARE
    ),
    inserted AS (
        INSERT INTO run_checkpoints (run_id, attempt, step, kind, call_index, payload)
        SELECT $1, $2::int, $3::int, $4::text, $5::int, $6::jsonb FROM run
        WHERE run.attempts = $2::int
          AND run.status NOT IN ('succeeded', 'failed', 'cancelled')
        ON CONFLICT (run_id, step, kind, call_index) DO NOTHING
        RETURNING id, attempt, step, kind, call_index, payload
    )
    SELECT run.status AS run_status, run.attempts AS run_attempts, run.cancel_requested_at,
           inserted.id AS inserted_id, inserted.attempt, inserted.step, inserted.kind,
           inserted.call_index, inserted.payload
    FROM run LEFT JOIN inserted ON true
"""
STORED = """
    SELECT * FROM run_checkpoints
    WHERE run_id = $1 AND step = $2 AND kind = $3 AND call_index = $4
"""


async def write_checkpoint(
    *, db: Database, run_id: str, cp: CheckpointIn
) -> tuple[CheckpointOut, bool]:
    """The stored checkpoint, and whether it was stored now (False: it already was)."""
    ids.require(run_id, "run")
    async with db.connection() as conn:
        row = await conn.fetchrow(
            WRITE, run_id, cp.attempt, cp.step, cp.kind, cp.call_index, cp.payload
        )
        if row is None:
            raise ids.not_found("run")
        if cp.attempt != row["run_attempts"]:
            raise stale_attempt(cp.attempt, row["run_attempts"])
        if row["run_status"] in TERMINAL_STATUSES:
            raise terminal(row["run_status"])
        inserted = row["inserted_id"] is not None
        stored = (
            row
            if inserted
            else await conn.fetchrow(STORED, run_id, cp.step, cp.kind, cp.call_index)
        )
    out = rows.checkpoint_out(stored)
    out.cancel_requested = row["cancel_requested_at"] is not None
    return out, inserted
