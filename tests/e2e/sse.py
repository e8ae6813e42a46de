"""A minimal SSE client for the end-to-end tests, built on httpx-sse.

It reads a run's event stream as a client would and can stop after N events
(to simulate a dropped connection) or at the terminal `done` event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import connect_sse


@dataclass(frozen=True)
class Received:
    id: str
    event: str
    data: dict[str, Any]


def read_events(
    url: str,
    key: str,
    *,
    last_event_id: str | None = None,
    stop_after: int | None = None,
    timeout_s: float = 60.0,
) -> list[Received]:
    """Events until `done` (or `stop_after` events, then the connection is dropped)."""
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    got: list[Received] = []
    timeout = httpx.Timeout(timeout_s, connect=5.0)
    with (
        httpx.Client(timeout=timeout) as client,
        connect_sse(client, "GET", url, headers=headers) as source,
    ):
        source.response.raise_for_status()
        for sse in source.iter_sse():
            if not sse.event or (sse.event == "message" and not sse.data):
                continue
            got.append(Received(sse.id, sse.event, json.loads(sse.data) if sse.data else {}))
            if sse.event == "done" or (stop_after is not None and len(got) >= stop_after):
                break
    return got


def token_text(events: list[Received]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "token")
