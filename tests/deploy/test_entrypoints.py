"""Each image's ENTRYPOINT is a console script that exists, starts and stops on
SIGTERM, and refuses a bad setting the one way every service does.

The Dockerfile runs the console script named in ENTRYPOINT/CMD; the chart runs
the image with that command. So the command must be declared in the service's
`[project.scripts]`, be installed in the workspace venv, and start as a
process that answers GET /healthz with its dependencies (Redis, Postgres,
state) unreachable — liveness never depends on them — then exit promptly on
SIGTERM, as a pod does when Kubernetes stops it. The port asked is the public
one (a minimal /healthz), the runner's its management port (it has no other);
every Relay service gets a free management port of its own.

A bad setting (relay_core.entrypoint, used by gateway, events, state and the
runner) stops the process with exit code 2 and exactly one JSON log line on
stdout that names the variable and the problem: no traceback, nothing on
stderr, and no secret value, neither the bad one nor the good ones around it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from relay_devstack.procs import free_port
from tests.deploy.chart import REPO
from tests.deploy.dockerfile import SERVICES, service_dockerfile

VENV_BIN = Path(sys.executable).parent
START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 10.0


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
    if service == "runner":  # no public port: its management port answers /healthz
        env["RELAY_MANAGEMENT_PORT"] = str(port)
        return env
    env[f"{prefix}PORT"] = str(port)
    if service != "modelsim":
        env["RELAY_MANAGEMENT_PORT"] = str(free_port())
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


# --- a bad setting: exit 2, one log line -------------------------------------------

ENTRYPOINT_SERVICES = ["events", "gateway", "runner", "state"]  # modelsim stands alone
# Real-looking secrets set beside the bad setting: none may appear in the output.
SECRETS = {
    "RELAY_INTERNAL_TOKEN": "tok-9f2c41d7e0a34b5f-internal",
    "RELAY_DATABASE_URL": "postgresql://relay:pw-5ac1e9d0b7@127.0.0.1:1/relay",
    "RELAY_ANTHROPIC_API_KEY": "sk-ant-3e8b6a0c9d4f1b27",
    "RELAY_ADMIN_API_KEY": "rk_admin_77d0c2b9e1f4a6",
}
# (variable, bad value, a word of the expected problem) per service
BAD_SETTINGS = {
    "events": [
        ("RELAY_KEEPALIVE_S", "-1", "greater than 0"),
        ("RELAY_PORT", "http", "integer"),
    ],
    "gateway": [
        ("RELAY_MAX_BODY_BYTES", "12", "greater than or equal to 1024"),
        ("RELAY_LOG_LEVEL", "chatty", "DEBUG, INFO"),
    ],
    "runner": [
        ("RELAY_RUNNER_POOL", "nightly", "'background' or 'interactive'"),
        ("RELAY_DEV_MODE", "maybe", "boolean"),
    ],
    "state": [
        ("RELAY_DB_POOL_MAX", "0", "greater than or equal to 1"),
        ("RELAY_RECONCILE_INTERVAL_S", "soon", "number"),
    ],
}


def run_refused(command: list[str], env: dict[str, str]) -> tuple[dict[str, object], str]:
    """Run a command expected to refuse its settings; its one log line, and all output."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    for secret in SECRETS.values():
        assert secret not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    line = json.loads(lines[0])
    assert line["level"] == "ERROR", line
    return line, output


def refusing_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(SECRETS, PYTHONDONTWRITEBYTECODE="1", **values)
    return env


@pytest.mark.parametrize(
    ("service", "variable", "value", "problem"),
    [(service, *case) for service, cases in BAD_SETTINGS.items() for case in cases],
)
def test_a_bad_setting_is_one_log_line_and_exit_2(
    service: str, variable: str, value: str, problem: str
) -> None:
    line, _ = run_refused([str(VENV_BIN / f"relay-{service}")], refusing_env(**{variable: value}))
    assert line["service"] == service
    assert line["settings"] == [variable]
    assert variable in str(line["msg"]) and problem in str(line["msg"]), line
    assert value not in str(line["msg"])  # what was given is never echoed


@pytest.mark.parametrize("service", ENTRYPOINT_SERVICES)
def test_a_placeholder_secret_is_named_never_shown(service: str) -> None:
    env = refusing_env(RELAY_INTERNAL_TOKEN="changeme")
    line, output = run_refused([str(VENV_BIN / f"relay-{service}")], env)
    assert line["settings"] == ["RELAY_INTERNAL_TOKEN"]
    assert "missing or a placeholder" in str(line["msg"])
    assert "changeme" not in output


def test_state_commands_refuse_a_bad_setting_the_same_way() -> None:
    """`relay-state migrate` logs to stderr (its stdout is its output), same line."""
    env = refusing_env(RELAY_LOG_LEVEL="loud")
    line, _ = run_refused([str(VENV_BIN / "relay-state"), "migrate"], env)
    assert line["settings"] == ["RELAY_LOG_LEVEL"]


@pytest.mark.parametrize("service", ["gateway", "runner"])
def test_a_model_catalog_that_does_not_load_is_a_bad_setting(service: str, tmp_path: Path) -> None:
    """Found after validation, while the service sets up: still exit 2, one ERROR line."""
    models = tmp_path / "models.json"
    models.write_text('{"m": {"provider": "anthropic", "upstream_model": "m", "fallbacks": ["x"]}}')
    env = refusing_env(
        RELAY_DEV_MODE="true",
        RELAY_MODELS_FILE=str(models),
        RELAY_PORT=str(free_port()),
        RELAY_MANAGEMENT_PORT=str(free_port()),
    )
    done = subprocess.run(
        [str(VENV_BIN / f"relay-{service}")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    errors = [json.loads(x) for x in done.stdout.splitlines() if '"ERROR"' in x]
    assert len(errors) == 1, output
    assert "RELAY_MODELS_FILE" in errors[0]["settings"]
    assert not any(secret in output for secret in SECRETS.values())
