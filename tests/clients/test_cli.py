"""The `relay` command against a real stack, run as a user runs it (a process).

- `relay chat` streams the answer on stdout (tool calls and the cost summary
  on stderr) and exits 0; its text is the stored transcript's.
- A bad key: one clear line on stderr, a non-zero exit, nothing on stdout.
- `relay admin kill-switch on` makes the next `relay run` fail with the
  kill switch's message.
- A connection dropped mid-run (the events service killed and restarted)
  prints one line, "reconnected, resuming after event ...", and goes on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relay_devstack.harness import wait_for
from relay_devstack.stack import Stack
from tests.clients.kit import record_figures, sim

RELAY = str(Path(sys.executable).parent / "relay")


@pytest.fixture
def cli_env(tmp_path: Path, clients_stack: Stack) -> dict[str, str]:
    """No user config, no inherited RELAY_*: only what each test passes."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("RELAY_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), RELAY_URL=clients_stack.gateway_url)
    env.update(COLUMNS="200", NO_COLOR="1")
    return env


def relay(env: dict[str, str], key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RELAY, *args],
        env={**env, "RELAY_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def transcript_text(stack: Stack, key: str, run_id: str) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=10) as http:
        run = http.get(f"/v1/runs/{run_id}").json()
        messages = http.get(run["transcript_url"]).json()["messages"]
    return "".join(
        m["text"] for m in messages if m["role"] == "assistant" and m["run_id"] == run_id
    )


def test_chat_streams_the_answer_and_exits_0(
    cli_env: dict[str, str], user_key: str, clients_stack: Stack
) -> None:
    tools = [{"name": "calculator", "args": {"expression": "6*7"}}]
    done = relay(cli_env, user_key, "chat", sim("What is 6*7?", tools=tools, tokens=12))
    assert done.returncode == 0, done.stderr
    assert "⚙ calculator" in done.stderr and "✓ calculator" in done.stderr
    assert "✓ succeeded" in done.stderr and "$" in done.stderr
    run_id = done.stderr.split(" run ")[1].split()[0]
    assert done.stdout.rstrip("\n") == transcript_text(clients_stack, user_key, run_id)
    assert "Tool calculator returned 42" in done.stdout

    as_json = relay(cli_env, user_key, "chat", "--json", sim("again", tokens=5))
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert as_json.returncode == 0 and lines[-1]["status"] == "succeeded"
    assert lines[-2]["type"] == "done" and lines[0]["type"] == "start"
    assert sum(1 for line in lines if line.get("type") == "token") == 5


def test_a_bad_key_is_one_clear_line_and_a_non_zero_exit(cli_env: dict[str, str]) -> None:
    done = relay(cli_env, "not-a-real-key", "chat", "hello")
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert "invalid or revoked API key" in done.stderr and "401" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_kill_switch_stops_the_next_run(
    cli_env: dict[str, str], user_key: str, admin_key: str
) -> None:
    on = relay(cli_env, admin_key, "admin", "kill-switch", "on")
    try:
        assert on.returncode == 0, on.stderr
        assert "ON" in on.stdout
        refused = relay(cli_env, user_key, "run", "hello")
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            "error: new runs are paused by the kill switch (HTTP 503)"
        ), refused.stderr
        status = relay(cli_env, admin_key, "admin", "kill-switch", "status", "--json")
        assert json.loads(status.stdout) == {"enabled": True}
    finally:
        off = relay(cli_env, admin_key, "admin", "kill-switch", "off")
    assert off.returncode == 0 and "off" in off.stdout
    assert relay(cli_env, user_key, "run", sim("hi", tokens=3)).returncode == 0
    top = relay(cli_env, admin_key, "top", "--json")
    view = json.loads(top.stdout)
    assert view["kill_switch"] is False and {p["pool"] for p in view["pools"]} == {
        "background",
        "interactive",
    }
    screen = relay(cli_env, admin_key, "top", "--once")
    assert screen.returncode == 0, screen.stderr
    for shown in ("kill switch off", "runner pools", "interactive", "sim-default", "spend today"):
        assert shown in screen.stdout, screen.stdout
    refused = relay(cli_env, user_key, "top")  # not an admin: one line, 403, no live screen
    assert refused.returncode == 1 and "403" in refused.stderr


class Reader:
    """A child's stdout read as it arrives."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read(1), ""):  # type: ignore[union-attr]
            self.text += chunk

    def join(self) -> None:
        self._thread.join(timeout=30)


@pytest.fixture
def popen_relay(cli_env: dict[str, str]) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_dropped_connection_is_one_line_and_the_run_goes_on(
    cli_env: dict[str, str],
    user_key: str,
    clients_stack: Stack,
    popen_relay: list[subprocess.Popen[str]],
) -> None:
    proc = subprocess.Popen(
        [RELAY, "run", sim("long", tokens=120, token_delay_ms=20)],
        env={**cli_env, "RELAY_API_KEY": user_key},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    popen_relay.append(proc)
    out = Reader(proc)
    wait_for(lambda: len(out.text.split()) >= 20, timeout_s=30, what="20 words on stdout")
    clients_stack.kill("events")
    clients_stack.start_service("events")
    code = proc.wait(timeout=60)
    out.join()
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert code == 0, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("reconnected")]
    assert len(lines) == 1 and lines[0].startswith("reconnected, resuming after event "), stderr
    run_id = stderr.split(" run ")[1].split()[0]
    transcript = transcript_text(clients_stack, user_key, run_id)
    assert out.text.rstrip("\n") == transcript, (stderr, out.text)
    assert len(transcript.split()) == 120
    record_figures("cli reconnect", words=len(transcript.split()), reconnect_lines=len(lines))
