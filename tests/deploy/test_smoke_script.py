"""The `helm test` script (deploy/helm/relay/files/smoke_test.py) against a fake Relay.

The script runs only inside a cluster, so its HTTP and SSE handling is checked
here against a small in-process gateway+events stand-in: it must succeed when
the stream ends with `done`/succeeded, and fail when the run fails or the
stream closes early.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.deploy.chart import CHART_DIR

SCRIPT = CHART_DIR / "files" / "smoke_test.py"
KEY = "test-admin-key"


def sse(events: list[tuple[str, dict]]) -> bytes:
    lines = [": keep-alive\n\n"]
    for index, (event, data) in enumerate(events):
        lines.append(f"id: 1-{index}\nevent: {event}\ndata: {json.dumps(data)}\n\n")
    return "".join(lines).encode()


def make_handler(events: list[tuple[str, dict]]) -> type[BaseHTTPRequestHandler]:
    class FakeRelay(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {KEY}":
                return True
            self.send_response(401)
            self.end_headers()
            return False

        def do_GET(self) -> None:
            if self.path == "/healthz":  # the public port's (probes are on the management port)
                self.send_response(200)
                self.end_headers()
            elif self.path == "/v1/runs/r1/events" and self._authorized():
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(sse(events))

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/v1/runs" and self._authorized() and body.get("message"):
                payload = json.dumps({"run_id": "r1", "status": "queued"}).encode()
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

    return FakeRelay


@pytest.fixture
def fake_relay(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(request.param))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_script(base: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "RELAY_TEST_GATEWAY_URL": base,
        "RELAY_TEST_EVENTS_URL": base,
        "RELAY_TEST_API_KEY": KEY,
        "RELAY_TEST_MESSAGE": 'hello\n#sim {"tokens": 3}',
        "RELAY_TEST_TIMEOUT_S": "10",
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30
    )


START = [("start", {"run_id": "r1", "attempt": 1}), ("token", {"text": "hi", "step": 0})]


@pytest.mark.parametrize(
    ("fake_relay", "code"),
    [
        ([*START, ("done", {"status": "succeeded", "cost_usd": 0.0})], 0),
        ([*START, ("error", {"type": "x", "message": "boom"}), ("done", {"status": "failed"})], 1),
        (START, 1),
    ],
    ids=["succeeded", "failed", "closed-early"],
    indirect=["fake_relay"],
)
def test_smoke_script(fake_relay: str, code: int) -> None:
    result = run_script(fake_relay)
    assert result.returncode == code, result.stdout + result.stderr
