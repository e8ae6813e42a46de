"""Database rows to wire models (relay_core.state_api), in one place.

Rows are read by column name, so service queries may `SELECT *`. Money
columns are `numeric` (exact sums in the ledger); asyncpg returns them
as Decimal and the wire carries floats.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from relay_core.state_api import CheckpointOut, KeyOut, MessageOut, Principal, RunOut
from relay_core.tracing import trace_id_of


def money(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def run_out(row: asyncpg.Record) -> RunOut:
    return RunOut(
        run_id=row["id"],
        user_id=row["user_id"],
        conversation_id=row["conversation_id"],
        kind=row["kind"],
        status=row["status"],
        model=row["model"],
        max_cost_usd=money(row["max_cost_usd"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        attempts=row["attempts"],
        cost_usd=money(row["cost_usd"]) or 0.0,
        error=row["error"],
        cancel_requested=row["cancel_requested_at"] is not None,
        daily_limit_usd=money(row["daily_limit_usd"]),
        deferred=row["deferred"],
        traceparent=row["traceparent"],
        trace_id=trace_id_of(row["traceparent"]),
    )


def key_limits(row: asyncpg.Record) -> dict[str, Any]:
    """The limits an api_keys row carries (KeyLimits' fields)."""
    return {
        "run_limit_usd": money(row["run_limit_usd"]),
        "daily_limit_usd": money(row["daily_limit_usd"]),
        "rate_limit_per_min": row["rate_limit_per_min"],
        "max_concurrent_runs": row["max_concurrent_runs"],
        "max_streams": row["max_streams"],
        "interactive_share": row["interactive_share"],
    }


def key_out(row: asyncpg.Record) -> KeyOut:
    return KeyOut(
        key_id=row["id"],
        user_id=row["user_id"],
        role=row["role"],
        name=row["name"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        **key_limits(row),
    )


def principal(row: asyncpg.Record) -> Principal:
    return Principal(key_id=row["id"], user_id=row["user_id"], role=row["role"], **key_limits(row))


def message_out(row: asyncpg.Record) -> MessageOut:
    return MessageOut(
        role=row["role"],
        content=row["content"],
        run_id=row["run_id"],
        token_count=row["token_count"],
        cost_usd=money(row["cost_usd"]) or 0.0,
        created_at=row["created_at"],
    )


def checkpoint_out(row: asyncpg.Record) -> CheckpointOut:
    payload: dict[str, Any] = row["payload"]
    return CheckpointOut(
        step=row["step"],
        kind=row["kind"],
        call_index=row["call_index"],
        attempt=row["attempt"],
        payload=payload,
    )


def numeric(value: float | None) -> Decimal | None:
    """A float from the wire as an exact numeric parameter (via its shortest repr)."""
    return None if value is None else Decimal(repr(float(value)))
