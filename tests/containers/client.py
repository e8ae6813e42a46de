"""A client of the release, as an application would be: HTTP to the gateway and events.

`EventReader` follows a run's events in a thread so a test can act while the
run is in flight (kill its runner at the first token) and then wait for the
rest; every wait has a deadline.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from httpx_sse import connect_sse

from tests.e2e.sse import Received

# Longer than the events service's keep-alive interval (15 s): a stream that
# waits for a run to be re-claimed stays open.
READ_TIMEOUT_S = 120.0


def sim(text: str, **directive: Any) -> str:
    """A user message carrying a modelsim `#sim` directive."""
    return f"{text}\n#sim {json.dumps(directive)}"


def submit(gateway: str, key: str, message: str) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway}/v1/runs",
        json={"message": message},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def read_sse(client: httpx.Client, method: str, url: str, **kwargs: Any) -> list[Received]:
    got: list[Received] = []
    with connect_sse(client, method, url, **kwargs) as source:
        assert source.response.status_code == 200, source.response.read()
        for sse in source.iter_sse():
            if sse.event and sse.data:
                got.append(Received(sse.id, sse.event, json.loads(sse.data)))
                if sse.event == "done":
                    break
    return got


def chat(gateway: str, key: str, message: str) -> list[Received]:
    """An interactive run, streamed on the gateway's own response."""
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=5.0)
    with httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {key}"}) as client:
        return read_sse(client, "POST", f"{gateway}/v1/chat/stream", json={"message": message})


class EventReader(threading.Thread):
    """A run's events, read from the events service into `events` until `done`."""

    def __init__(self, events_url: str, key: str, run_id: str) -> None:
        super().__init__(daemon=True, name=f"events-{run_id}")
        self.url = f"{events_url}/v1/runs/{run_id}/events"
        self.key = key
        self.events: list[Received] = []
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        timeout = httpx.Timeout(READ_TIMEOUT_S, connect=5.0)
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            with httpx.Client(timeout=timeout, headers=headers) as client:
                with connect_sse(client, "GET", self.url) as source:
                    for sse in source.iter_sse():
                        if sse.event and sse.data:
                            self.events.append(Received(sse.id, sse.event, json.loads(sse.data)))
                            if sse.event == "done":
                                return
        except BaseException as exc:  # reported by wait_for
            self.error = exc

    def names(self) -> list[str]:
        return [e.event for e in self.events]

    def wait_for(
        self, what: str, check: Callable[[list[Received]], bool], timeout_s: float
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not check(list(self.events)):
            if self.error is not None:
                raise AssertionError(f"the stream failed waiting for {what}: {self.error!r}")
            if not self.is_alive() and not check(list(self.events)):
                raise AssertionError(f"the stream ended without {what}: {self.names()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout_s:.0f}s: {self.names()}")
            time.sleep(0.05)

    def done(self, timeout_s: float) -> Received:
        self.wait_for("done", lambda got: any(e.event == "done" for e in got), timeout_s)
        return next(e for e in self.events if e.event == "done")
