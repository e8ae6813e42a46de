"""Every API call as data (method, path, body, the model of its answer), so
the sync and async clients share one definition and differ only in I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from relay_client import models
from relay_client.config import new_idempotency_key

M = TypeVar("M", bound=BaseModel)

__all__ = ["Call"]


@dataclass(frozen=True)
class Call(Generic[M]):
    method: str
    path: str
    model: type[M] | None
    json: dict[str, Any] | None = None
    params: list[tuple[str, str | int | float | bool | None]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Safe to send again after a network error (a read, an idempotent write,
    # a submission under its Idempotency-Key)? Creating a key is not.
    repeatable: bool = True


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def submit(
    message: str,
    *,
    conversation_id: str | None,
    model: str | None,
    max_cost_usd: float | None,
    on_conflict: str | None,
    idempotency_key: str | None,
) -> Call[models.RunAccepted]:
    body = _body(
        message=message,
        conversation_id=conversation_id,
        model=model,
        max_cost_usd=max_cost_usd,
        on_conflict=on_conflict,
    )
    headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
    return Call("POST", "/v1/runs", models.RunAccepted, json=body, headers=headers)


def chat_body(
    message: str,
    *,
    conversation_id: str | None,
    model: str | None,
    max_cost_usd: float | None,
) -> dict[str, Any]:
    # Always detached on the server: the SDK resumes a dropped stream itself and
    # cancels a run its caller abandons (RunStream), so a network blip never
    # cancels a run.
    return _body(
        message=message,
        conversation_id=conversation_id,
        model=model,
        max_cost_usd=max_cost_usd,
        detach=True,
    )


def get_run(run_id: str) -> Call[models.Run]:
    return Call("GET", f"/v1/runs/{_segment(run_id)}", models.Run)


def list_runs(
    *, status: str | list[str] | None, limit: int, cursor: str | None
) -> Call[models.RunList]:
    params: list[tuple[str, str | int | float | bool | None]] = [("limit", limit)]
    if cursor:
        params.append(("cursor", cursor))
    statuses = [status] if isinstance(status, str) else list(status or [])
    params += [("status", s) for s in statuses]
    return Call("GET", "/v1/runs", models.RunList, params=params)


def cancel(run_id: str) -> Call[models.Run]:
    return Call("POST", f"/v1/runs/{_segment(run_id)}/cancel", models.Run)


def transcript(conversation_id: str) -> Call[models.Transcript]:
    return transcript_at(f"/v1/conversations/{_segment(conversation_id)}/messages")


def transcript_at(url: str) -> Call[models.Transcript]:
    return Call("GET", url, models.Transcript)


def kill_switch() -> Call[models.KillSwitch]:
    return Call("GET", "/v1/admin/kill-switch", models.KillSwitch)


def set_kill_switch(enabled: bool) -> Call[models.KillSwitch]:
    return Call("PUT", "/v1/admin/kill-switch", models.KillSwitch, json={"enabled": enabled})


def create_key(
    user_id: str, *, role: str, name: str, limits: dict[str, Any]
) -> Call[models.CreatedApiKey]:
    body = _body(user_id=user_id, role=role, name=name, **limits)
    return Call("POST", "/v1/admin/keys", models.CreatedApiKey, json=body, repeatable=False)


def list_keys(user_id: str | None) -> Call[models.KeyList]:
    return Call(
        "GET", "/v1/admin/keys", models.KeyList, params=[("user_id", user_id)] if user_id else None
    )


def revoke_key(key_id: str) -> Call[BaseModel]:
    return Call("DELETE", f"/v1/admin/keys/{_segment(key_id)}", None)


def overview() -> Call[models.Overview]:
    return Call("GET", "/v1/admin/overview", models.Overview)


def _segment(value: str) -> str:
    """An id as one path segment: anything that could leave it is escaped."""
    return quote(value, safe="")
