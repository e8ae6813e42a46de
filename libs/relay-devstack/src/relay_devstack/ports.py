"""The ports of a local stack: fixed, documented defaults for `make dev`
(each overridable by its own environment variable) and free ports for tests.

Each service but modelsim also has a management port (probes and metrics,
relay_core.httpserver): the public port + 1000 by default; a runner has only
that one (8083, 8084).

Why fixed defaults for the embedded Redis and Postgres too (6389, 5439): a
stable URL lets a developer point `redis-cli` or `psql` at the dev stack; they
sit away from 6379/5432 so a system Redis or Postgres does not collide.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields

from relay_devstack.procs import free_port, port_free

# field name → (environment variable, dev default)
DEV_PORTS: dict[str, tuple[str, int]] = {
    "gateway": ("RELAY_GATEWAY_PORT", 8080),
    "events": ("RELAY_EVENTS_PORT", 8081),
    "state": ("RELAY_STATE_PORT", 8082),
    "modelsim": ("RELAY_MODELSIM_PORT", 8090),
    "redis": ("RELAY_REDIS_PORT", 6389),
    "postgres": ("RELAY_POSTGRES_PORT", 5439),
    "traces": ("RELAY_TRACES_PORT", 6006),  # the trace UI of `make dev TRACES=1`
    # Management ports (probes, metrics); the runners have no other port.
    "gateway_management": ("RELAY_GATEWAY_MANAGEMENT_PORT", 9080),
    "events_management": ("RELAY_EVENTS_MANAGEMENT_PORT", 9081),
    "state_management": ("RELAY_STATE_MANAGEMENT_PORT", 9082),
    "runner_background": ("RELAY_RUNNER_PORT", 8083),
    "runner_interactive": ("RELAY_RUNNER_INTERACTIVE_PORT", 8084),
}


class SettingError(ValueError):
    """A `make dev` setting is invalid; the message names it."""


class PortError(SettingError):
    """A port setting is invalid or the port is taken; the message says which."""


@dataclass
class Ports:
    gateway: int
    events: int
    state: int
    modelsim: int
    redis: int
    postgres: int
    traces: int
    gateway_management: int
    events_management: int
    state_management: int
    runner_background: int
    runner_interactive: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Ports:
        """The dev ports, each overridable by its environment variable."""
        values: dict[str, int] = {}
        for name, (var, default) in DEV_PORTS.items():
            raw = environ.get(var, "").strip()
            try:
                values[name] = int(raw) if raw else default
            except ValueError:
                raise PortError(f"{var}={raw!r} is not a port number") from None
            if not 1 <= values[name] <= 65535:
                raise PortError(f"{var}={raw} is out of range (1-65535)")
        return cls(**values)

    @classmethod
    def free(cls) -> Ports:
        """Free ports, for a test stack."""
        return cls(**{f.name: free_port() for f in fields(cls)})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def ensure_free(ports: Mapping[str, int], *, grace_s: float = 3.0) -> None:
    """Raise PortError naming the first taken port and the variable that moves it.

    A short grace lets the sockets of a stack that just stopped go away.
    """
    deadline = time.monotonic() + grace_s
    for name, port in ports.items():
        while not port_free(port):
            if time.monotonic() >= deadline:
                var = DEV_PORTS.get(name, ("", 0))[0]
                other = port + 10000 if port < 55000 else port - 10000
                hint = f"; set {var} to use another one (e.g. {var}={other} make dev)"
                raise PortError(
                    f"port {port} ({name.replace('_', ' ')}) is already in use by another "
                    f"program{hint if var else ''}"
                )
            time.sleep(0.1)
