"""Each image's ENTRYPOINT is a console script that exists, starts and stops on SIGTERM.

The Dockerfile runs the console script named in ENTRYPOINT/CMD; the chart runs
the image with that command. So the command must be declared in the service's
`[project.scripts]`, be installed in the workspace venv, and start as a
process that answers GET /healthz with its dependencies (Redis, Postgres,
state) unreachable — liveness never depends on them — then exit promptly on
SIGTERM, as a pod does when Kubernetes stops it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.chart import REPO
from tests.deploy.dockerfile import SERVICES, service_dockerfile

VENV_BIN = Path(sys.executable).parent
START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 10.0


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scripts(service: str) -> dict[str, str]:
    project = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())
    return project["project"].get("scripts", {})


def service_env(service: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    closed = free_port()
    env.update(
        RELAY_DEV_MODE="true",
        RELAY_LOG_LEVEL="INFO",
        RELAY_REDIS_URL=f"redis://127.0.0.1:{closed}/0",
        RELAY_STATE_URL=f"http://127.0.0.1:{closed}",
        RELAY_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed}/relay",
        PYTHONDONTWRITEBYTECODE="1",
    )
    prefix = "RELAY_MODELSIM_" if service == "modelsim" else "RELAY_"
    env[f"{prefix}HOST"] = "127.0.0.1"
    env[f"{prefix}PORT"] = str(port)
    return env


def wait_healthy(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    last_error = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} before answering /healthz")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.2)
    pytest.fail(f"/healthz not 200 within {START_DEADLINE_S} s: {last_error}")


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_is_a_declared_console_script(service: str) -> None:
    command = service_dockerfile(service).command()
    assert command, "no ENTRYPOINT/CMD in exec form"
    assert command[0] in scripts(service), f"{command[0]} not in [project.scripts]"
    assert (VENV_BIN / command[0]).is_file(), f"{command[0]} is not installed in the venv"


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_starts_and_stops_on_sigterm(service: str, tmp_path: Path) -> None:
    command = service_dockerfile(service).command()
    port = free_port()
    log = (tmp_path / "output.log").open("w+")
    process = subprocess.Popen(
        [str(VENV_BIN / command[0]), *command[1:]],
        env=service_env(service, port),
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(process, port)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_DEADLINE_S} s after SIGTERM")
        assert time.monotonic() - started < STOP_DEADLINE_S
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.seek(0)
        sys.stdout.write(log.read()[-4000:])
        log.close()
