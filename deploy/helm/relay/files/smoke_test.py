"""`helm test` for Relay: submit a run through the gateway, stream it to `done`.

Runs inside the gateway image (its Python; standard library only, so the test
needs no third-party image and runs under the same hardened pod settings).
Talks to the Services directly, not through the Ingress, so it checks the
release itself. Also run by tests/deploy against a fake gateway and events
server, so the SSE parsing here is tested without a cluster.

Environment: RELAY_TEST_GATEWAY_URL, RELAY_TEST_EVENTS_URL, RELAY_TEST_API_KEY,
RELAY_TEST_MESSAGE, RELAY_TEST_TIMEOUT_S. Exit status 0 only when the run's
stream ends with a `done` event whose status is `succeeded`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator


def log(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def call(method: str, url: str, key: str, body: dict | None, timeout: float) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")


def wait_ready(base: str, deadline: float) -> None:
    """The release may still be rolling out when the test starts. A Service
    routes only to ready pods (their readiness probe is on the management port,
    which this pod cannot reach), so its public /healthz answering means a
    ready pod answered."""
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            log(f"waiting for {base}/healthz: {exc}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base} not ready")
        time.sleep(2)


def stream_events(url: str, key: str, timeout: float) -> Iterator[tuple[str, dict]]:
    """Yield (event, data) pairs of an SSE stream until it closes."""
    request = urllib.request.Request(url)  # noqa: S310
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Accept", "text/event-stream")
    event, data = "message", list[str]()
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if data:
                    yield event, json.loads("\n".join(data))
                event, data = "message", list[str]()
            elif line.startswith(":"):
                continue
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())


def main() -> int:
    gateway = os.environ["RELAY_TEST_GATEWAY_URL"].rstrip("/")
    events = os.environ["RELAY_TEST_EVENTS_URL"].rstrip("/")
    key = os.environ["RELAY_TEST_API_KEY"]
    message = os.environ.get("RELAY_TEST_MESSAGE", "helm test")
    timeout = float(os.environ.get("RELAY_TEST_TIMEOUT_S", "180"))
    deadline = time.monotonic() + timeout

    wait_ready(gateway, deadline)
    wait_ready(events, deadline)
    run = call("POST", f"{gateway}/v1/runs", key, {"message": message}, timeout=30)
    run_id = run["run_id"]
    log(f"submitted run {run_id} ({run.get('status')})")

    seen: list[str] = []
    for event, data in stream_events(f"{events}/v1/runs/{run_id}/events", key, timeout):
        seen.append(event)
        if event == "done":
            log(f"done: {data} after events {seen}")
            return 0 if data.get("status") == "succeeded" else 1
        if event == "error":
            log(f"error event: {data}")
    log(f"stream closed without a done event; saw {seen}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
