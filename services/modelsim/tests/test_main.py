"""The `relay-modelsim` process: starts, answers /healthz, stops fast on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relay_devstack.procs import free_port


@pytest.fixture
def process() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    script = Path(sys.executable).parent / "relay-modelsim"
    env = os.environ | {"RELAY_MODELSIM_PORT": str(port), "RELAY_MODELSIM_API_KEY": ""}
    env.pop("RELAY_MODELSIM_API_KEY")
    proc = subprocess.Popen([str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).json() == {"status": "ok"}:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "relay-modelsim did not answer /healthz"
        time.sleep(0.05)
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_with_an_open_stream_exits_cleanly_within_2s(
    process: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = process
    directive = '#sim {"tokens": 1000, "token_delay_ms": 50}'
    body = {
        "model": "m",
        "max_tokens": 2000,
        "stream": True,
        "messages": [{"role": "user", "content": directive}],
    }
    with httpx.stream(
        "POST", f"{url}/v1/messages", json=body, headers={"x-api-key": "k"}
    ) as response:
        lines = response.iter_lines()  # keep a reference: dropping it closes the stream
        assert next(lines).startswith("event: message_start")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=2)
        assert time.monotonic() - started < 2
        rest = "\n".join(lines)
    assert "shutting down" in rest  # the open stream was told why it ends
    assert proc.returncode == 0
    out, _ = proc.communicate()
    logs = [json.loads(line) for line in out.decode().splitlines()]
    assert {"ts", "level", "logger", "msg"} <= set(logs[0])
    assert any(log.get("signal") == "SIGTERM" for log in logs)
    assert not [log for log in logs if log["level"] == "ERROR" and "exc" in log]
