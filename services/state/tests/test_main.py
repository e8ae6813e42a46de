"""The `relay-state` command: migrate, create-key, and serving without its dependencies.

Bad settings are refused the way every service refuses them (exit 2, one log
line): tests/deploy/test_entrypoints.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from relay_core.state_api import CreatedKey
from relay_devstack.procs import free_port
from relay_state.apikeys import hash_key

COMMAND = str(Path(sys.executable).parent / "relay-state")


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(values)
    return env


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args], capture_output=True, text=True, timeout=60, env=_env(**env)
    )


def test_migrate_twice_then_create_key(fresh_database_url: str) -> None:
    first = _run("migrate", "--database-url", fresh_database_url)
    assert first.returncode == 0, first.stderr
    again = _run("migrate", RELAY_DATABASE_URL=fresh_database_url)
    assert again.returncode == 0, again.stderr

    out = _run(
        "create-key", "--user-id", "ops", "--role", "admin", "--name", "cli",
        RELAY_DATABASE_URL=fresh_database_url,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    created = CreatedKey.model_validate(json.loads(out.stdout))
    assert (created.user_id, created.role, created.name) == ("ops", "admin", "cli")
    assert created.api_key not in out.stderr

    async def stored_hash() -> str:
        conn = await asyncpg.connect(fresh_database_url)
        try:
            return str(await conn.fetchval("SELECT key_hash FROM api_keys"))
        finally:
            await conn.close()

    assert asyncio.run(stored_hash()) == hash_key(created.api_key)


def test_migrate_against_no_database_fails_clearly() -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/relay"
    out = _run("migrate", "--database-url", dead)
    assert out.returncode == 1
    assert "migrate failed" in out.stderr
    assert "unreachable" in out.stderr


def test_serves_healthz_with_everything_down_and_stops_on_sigterm() -> None:
    port, management = free_port(), free_port()
    proc = subprocess.Popen(
        [COMMAND],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env(
            RELAY_PORT=str(port),
            RELAY_MANAGEMENT_PORT=str(management),
            RELAY_DEV_MODE="true",
            RELAY_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/relay",
            RELAY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            RELAY_DEPENDENCY_TIMEOUT_S="0.5",
        ),
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "relay-state did not start"
                time.sleep(0.05)
        assert health.status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{management}/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["error"]["message"].startswith("postgres: ")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logs = proc.stdout.read() if proc.stdout else b""
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith(b"{")]
    assert any(line["msg"] == "state started" for line in lines)
