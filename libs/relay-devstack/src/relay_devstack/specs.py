"""What each process of the stack is: its console script, ports, probes and
environment. The Stack turns these into child processes; it is the
one way `make dev`, the end-to-end and chaos suites and the services' own
test fixtures start a Relay service, so each is started with the same
environment everywhere.

Each process is of a kind (`KINDS`: gateway, events, state, runner, modelsim)
and has a name: the core stack has one of each kind (two runners), and a test
may add more of any kind under names of its own (`Stack.start_extra`).

Environment layering, lowest first: the base environment the Stack was given
(the CLI passes the user's, tests pass theirs without any `RELAY_*`), the
settings every service shares, the service's own settings, then overrides
keyed `all`, the service's group (`runner` for every runner) and its name.

Probes, in one place (`ServiceSpec`): every Relay service answers `/readyz`
and `/livez` on its management port (relay_core.httpserver), which a runner
has alone (its `port` is that port); modelsim has no dependencies and no
management port, so its `/healthz` is both.

Why runners drain for only 3 s here (the production default is 60 s): Ctrl-C
on `make dev` must stop everything within a few seconds; tests that exercise
the drain override `RELAY_DRAIN_TIMEOUT_S`.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from relay_devstack.ports import Ports

RUNNER_POOLS = ("background", "interactive")
KINDS = ("modelsim", "state", "runner", "gateway", "events")
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
    group: str = ""
    # Probes and metrics; None: the public port answers them (modelsim).
    management_port: int | None = None

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port or self.port}"

    @property
    def ready_path(self) -> str:
        return "/readyz" if self.management_port else "/healthz"

    @property
    def alive_path(self) -> str:
        return "/livez" if self.management_port else "/healthz"

    @property
    def kind(self) -> str:
        return self.script.removeprefix("relay-")


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
    """A runner: `port` is its management port, its only one."""
    if pool not in RUNNER_POOLS:
        raise ValueError(f"unknown runner pool {pool!r}; expected one of {RUNNER_POOLS}")
    env = {
        "RELAY_MANAGEMENT_PORT": str(port),
        "RELAY_RUNNER_POOL": pool,
        "RELAY_CONSUMER_NAME": name,
        "RELAY_DRAIN_TIMEOUT_S": DEV_DRAIN_TIMEOUT_S,
        "RELAY_ANTHROPIC_BASE_URL": modelsim_url,
        "RELAY_ANTHROPIC_API_KEY": SIM_KEY,
        "RELAY_OPENAI_BASE_URL": modelsim_url + "/v1",
        "RELAY_OPENAI_API_KEY": SIM_KEY,
    }
    return ServiceSpec(name, "relay-runner", port, env, group="runner", management_port=port)


def service_spec(
    kind: str,
    name: str,
    port: int,
    *,
    ports: Ports,
    database_url: str = "",
    pool: str = "",
    management_port: int = 0,
) -> ServiceSpec:
    """The spec of one process of `kind` named `name` on `port` (and
    `management_port`, but for modelsim; a runner has only `port`), in a stack
    whose other services listen on `ports` (a runner's model provider is the
    stack's modelsim; a gateway's public events URL the stack's events service)."""
    modelsim_url = f"http://127.0.0.1:{ports.modelsim}"
    if kind == "runner":
        return runner_spec(name, pool or "background", port, modelsim_url)
    if kind == "modelsim":
        env = {"RELAY_MODELSIM_HOST": "127.0.0.1", "RELAY_MODELSIM_PORT": str(port)}
        return ServiceSpec(name, "relay-modelsim", port, env)
    if kind not in KINDS:
        raise ValueError(f"unknown service kind {kind!r}; expected one of {KINDS}")
    own = {"RELAY_PORT": str(port), "RELAY_MANAGEMENT_PORT": str(management_port)}
    if kind == "state":
        own["RELAY_DATABASE_URL"] = database_url
    if kind == "gateway":
        own["RELAY_EVENTS_PUBLIC_URL"] = f"http://127.0.0.1:{ports.events}"
    if kind == "events":
        # the web console is served by the gateway, another origin here
        own["RELAY_CORS_ORIGINS"] = (
            f"http://127.0.0.1:{ports.gateway},http://localhost:{ports.gateway}"
        )
    return ServiceSpec(name, f"relay-{kind}", port, own, management_port=management_port)


# The core stack, in start-up order: name -> (kind, runner pool, port field of Ports).
# The management port of `x` is Ports' `x_management` (a runner's `port` is its).
CORE = {
    "modelsim": ("modelsim", "", "modelsim"),  # no dependencies: alive is ready
    "state": ("state", "", "state"),
    "runner-background": ("runner", "background", "runner_background"),
    "runner-interactive": ("runner", "interactive", "runner_interactive"),
    "gateway": ("gateway", "", "gateway"),
    "events": ("events", "", "events"),
}


def core_specs(
    ports: Ports, *, database_url: str, only: Iterable[str] | None = None
) -> dict[str, ServiceSpec]:
    """The stack's services (or those named in `only`), in start-up order."""
    wanted = set(CORE) if only is None else set(only)
    unknown = wanted - set(CORE)
    if unknown:
        raise StackError(f"unknown services {sorted(unknown)}; the stack has {list(CORE)}")
    specs = {}
    for name, (kind, pool, port_field) in CORE.items():
        if name in wanted:
            port = getattr(ports, port_field)
            specs[name] = service_spec(
                kind,
                name,
                port,
                ports=ports,
                database_url=database_url,
                pool=pool,
                management_port=getattr(ports, f"{port_field}_management", 0),
            )
    return specs


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
