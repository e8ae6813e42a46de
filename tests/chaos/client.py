"""A client of the running stack, as an application would use it: HTTP only.

`Client` submits runs to the gateway, reads and cancels them. `follow()`
reads a run's events from the events service until `done`, dropping its own
connection every few events and resuming with `Last-Event-ID` (and riding
out errors the same way), so the chaos tests can compare what a resuming
client received with the full replay at the end: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from relay_core.events import TERMINAL_STATUSES, parse_stream_id

TIMEOUT = httpx.Timeout(10.0, connect=2.0)


def sim(text: str, **directive: Any) -> str:
    """A user message carrying a modelsim `#sim` directive."""
    return f"{text}\n#sim {json.dumps(directive)}"


def stream_ms(event_id: str) -> int:
    """When an event was stored: the millisecond part of its stream id."""
    return parse_stream_id(event_id)[0]


@dataclass(frozen=True)
class Received:
    id: str
    event: str
    data: dict[str, Any]


class StreamError(Exception):
    """The events service refused the stream (its status and body)."""


async def read_events(
    http: httpx.AsyncClient,
    url: str,
    *,
    last_event_id: str | None = None,
    stop_after: int | None = None,
    into: list[Received] | None = None,
) -> list[Received]:
    """Events until `done`, or until `stop_after` events (then the connection is dropped).

    Each event is appended to `into` (default: a new list) as it arrives."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    got: list[Received] = [] if into is None else into
    start = len(got)
    async with aconnect_sse(http, "GET", url, headers=headers) as source:
        if source.response.status_code != 200:
            await source.response.aread()
            raise StreamError(f"{source.response.status_code} {source.response.text[:300]}")
        async for sse in source.aiter_sse():
            if not sse.event or not sse.data:
                continue
            got.append(Received(sse.id, sse.event, json.loads(sse.data)))
            if sse.event == "done" or (stop_after is not None and len(got) - start >= stop_after):
                break
    return got


@dataclass
class Follower:
    """One client following one run to its end, reconnecting as a browser would."""

    http: httpx.AsyncClient
    url: str
    drop_every: int | None = None
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def last_id(self) -> str | None:
        return self.received[-1].id if self.received else None

    @property
    def done(self) -> bool:
        return bool(self.received) and self.received[-1].event == "done"

    async def follow(self, *, timeout_s: float) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while not self.done:
            if time.monotonic() > deadline:
                raise AssertionError(f"no `done` on {self.url} after {timeout_s}s: {self.errors}")
            self.connections += 1
            try:
                await read_events(
                    self.http,
                    self.url,
                    last_event_id=self.last_id,
                    stop_after=self.drop_every,
                    into=self.received,
                )
            except (httpx.HTTPError, StreamError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(0.2)
        return self.received


def assert_same_stream(received: list[Received], replay: list[Received]) -> None:
    """What a resuming client got is exactly the stored stream: no gap, no duplicate."""
    ids = [r.id for r in received]
    dupes = len(ids) - len(set(ids))
    assert dupes == 0, f"{dupes} duplicate event ids"
    assert ids == sorted(ids, key=parse_stream_id), "events out of order"
    assert [(r.id, r.event, r.data) for r in received] == [
        (r.id, r.event, r.data) for r in replay
    ], "the resumed stream differs from the full replay"


class Client:
    """One user's client of the gateway (async httpx, Bearer key)."""

    def __init__(self, gateway_url: str, key: str) -> None:
        self.key = key
        self.http = httpx.AsyncClient(
            base_url=gateway_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=TIMEOUT,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def submit(self, message: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        resp = await self.http.post("/v1/runs", json={"message": message}, headers=headers)
        assert resp.status_code == 202, resp.text
        return dict(resp.json())

    async def submit_all(self, messages: list[str]) -> list[dict[str, Any]]:
        """Submit at once (concurrently), as a burst of clients would; in order."""
        return list(await asyncio.gather(*(self.submit(m) for m in messages)))

    async def submit_retrying(self, message: str, *, timeout_s: float) -> dict[str, Any]:
        """Submit until accepted (202), the same Idempotency-Key on every try."""
        key = uuid.uuid4().hex
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                resp = await self.http.post(
                    "/v1/runs", json={"message": message}, headers={"Idempotency-Key": key}
                )
                if resp.status_code == 202:
                    return dict(resp.json())
                assert resp.status_code == 503, resp.text
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not accepted after {timeout_s}s"
            await asyncio.sleep(0.2)

    async def run(self, run_id: str) -> dict[str, Any]:
        resp = await self.http.get(f"/v1/runs/{run_id}")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def cancel(self, run_id: str) -> dict[str, Any]:
        resp = await self.http.post(f"/v1/runs/{run_id}/cancel")
        assert resp.status_code == 202, resp.text
        return dict(resp.json())

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        resp = await self.http.get(f"/v1/conversations/{conversation_id}/messages")
        assert resp.status_code == 200, resp.text
        return list(resp.json()["messages"])

    async def wait_terminal(
        self, run_ids: Iterable[str], *, timeout_s: float
    ) -> dict[str, dict[str, Any]]:
        """Every run's record once all are terminal (polled under one deadline)."""
        pending = set(run_ids)
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while pending:
            for run_id in list(pending):
                try:
                    run = await self.run(run_id)
                except (httpx.HTTPError, AssertionError):
                    continue  # a dependency may still be coming back
                if run["status"] in TERMINAL_STATUSES:
                    found[run_id] = run
                    pending.discard(run_id)
            if pending:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{len(pending)} runs not terminal after {timeout_s}s: {sorted(pending)}"
                    )
                await asyncio.sleep(0.25)
        return found


def events_client(key: str) -> httpx.AsyncClient:
    """A client for the events service (absolute `events_url`s), sending `key`."""
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(60.0, connect=2.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
    )
