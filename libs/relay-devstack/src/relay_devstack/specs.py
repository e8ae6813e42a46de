"""What each process of the stack is: its console script, port, readiness
path and environment. The Stack turns these into child processes.

Environment layering, lowest first: the base environment the Stack was given
(the CLI passes the user's, tests pass theirs without any `RELAY_*`), the
settings every service shares, the service's own settings, then overrides
keyed `all`, the service's group (`runner` for every runner) and its name.

Why runners drain for only 3 s here (the production default is 60 s): Ctrl-C
on `make dev` must stop everything within a few seconds; tests that exercise
the drain override `RELAY_DRAIN_TIMEOUT_S`.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from relay_devstack.ports import Ports

RUNNER_POOLS = ("background", "interactive")
DEV_DRAIN_TIMEOUT_S = "3"
SIM_KEY = "sim-key"  # modelsim accepts any key unless RELAY_MODELSIM_API_KEY is set


class StackError(RuntimeError):
    """The stack could not start or a service failed; the message says which and why."""


@dataclass
class ServiceSpec:
    name: str
    script: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"
    group: str = ""

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def script_path(script: str) -> str:
    """The console script next to this interpreter (the workspace venv), else on PATH."""
    local = Path(sys.executable).parent / script
    if local.exists():
        return str(local)
    found = shutil.which(script)
    if found is None:
        raise StackError(f"`{script}` is not installed: run `make dev` (or `uv sync`) first")
    return found


def runner_spec(name: str, pool: str, port: int, modelsim_url: str) -> ServiceSpec:
    if pool not in RUNNER_POOLS:
        raise ValueError(f"unknown runner pool {pool!r}; expected one of {RUNNER_POOLS}")
    env = {
        "RELAY_PORT": str(port),
        "RELAY_RUNNER_POOL": pool,
        "RELAY_CONSUMER_NAME": name,
        "RELAY_DRAIN_TIMEOUT_S": DEV_DRAIN_TIMEOUT_S,
        "RELAY_ANTHROPIC_BASE_URL": modelsim_url,
        "RELAY_ANTHROPIC_API_KEY": SIM_KEY,
        "RELAY_OPENAI_BASE_URL": modelsim_url + "/v1",
        "RELAY_OPENAI_API_KEY": SIM_KEY,
    }
    return ServiceSpec(name, "relay-runner", port, env, group="runner")


def core_specs(ports: Ports, *, database_url: str) -> dict[str, ServiceSpec]:
    """The stack's services, in start-up order."""
    modelsim = ServiceSpec(
        "modelsim",
        "relay-modelsim",
        ports.modelsim,
        {"RELAY_MODELSIM_HOST": "127.0.0.1", "RELAY_MODELSIM_PORT": str(ports.modelsim)},
        ready_path="/healthz",  # no dependencies: alive is ready
    )
    sim_url = modelsim.url()
    specs = [
        modelsim,
        ServiceSpec(
            "state",
            "relay-state",
            ports.state,
            {"RELAY_PORT": str(ports.state), "RELAY_DATABASE_URL": database_url},
        ),
        runner_spec("runner-background", "background", ports.runner_background, sim_url),
        runner_spec("runner-interactive", "interactive", ports.runner_interactive, sim_url),
        ServiceSpec(
            "gateway",
            "relay-gateway",
            ports.gateway,
            {
                "RELAY_PORT": str(ports.gateway),
                "RELAY_EVENTS_PUBLIC_URL": f"http://127.0.0.1:{ports.events}",
            },
        ),
        ServiceSpec(
            "events",
            "relay-events",
            ports.events,
            {
                "RELAY_PORT": str(ports.events),
                # the web console is served by the gateway, another origin here
                "RELAY_CORS_ORIGINS": (
                    f"http://127.0.0.1:{ports.gateway},http://localhost:{ports.gateway}"
                ),
            },
        ),
    ]
    return {s.name: s for s in specs}


def shared_env(*, redis_url: str, state_url: str, internal_token: str) -> dict[str, str]:
    """Settings every service gets."""
    return {
        "RELAY_HOST": "127.0.0.1",
        "RELAY_DEV_MODE": "true",
        "RELAY_REDIS_URL": redis_url,
        "RELAY_STATE_URL": state_url,
        "RELAY_INTERNAL_TOKEN": internal_token,
        "PYTHONUNBUFFERED": "1",
    }


def child_env(
    spec: ServiceSpec,
    *,
    base: Mapping[str, str],
    shared: Mapping[str, str],
    overrides: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    env = {**base, **shared, **spec.env}
    for key in ("all", spec.group, spec.name):
        if key:
            env.update(overrides.get(key, {}))
    return env
