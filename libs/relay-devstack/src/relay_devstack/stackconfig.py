"""How a Stack is configured: for `make dev` from the environment, for tests
from free ports and a temporary folder. Everything else is the same code path.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from relay_devstack.ports import Ports, SettingError
from relay_devstack.rediscluster import CLUSTER_ENV, cluster_wanted

DATA_DIR_VAR = "RELAY_DEV_DATA_DIR"
# `make dev REDIS=cluster`: the embedded Redis is a 3+3 Redis Cluster.
DEV_REDIS_VAR = "RELAY_DEV_REDIS"
CLUSTER_NODES = 6


def _seconds(env: Mapping[str, str], var: str, default: float) -> float:
    raw = env.get(var, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SettingError(f"{var}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise SettingError(f"{var}={raw} must be more than 0 seconds")
    return value


def _trace_ui(env: Mapping[str, str]) -> str | None:
    """The Phoenix command when `RELAY_DEV_TRACES` is on (the Makefile installs it
    and names it in `RELAY_DEV_PHOENIX`)."""
    flag = env.get("RELAY_DEV_TRACES", "").strip().lower()
    if flag in ("", "0", "false", "no", "off"):
        return None
    if flag not in ("1", "true", "yes", "on"):
        raise SettingError(f"RELAY_DEV_TRACES={flag!r}: use 1 (a trace UI) or 0")
    command = env.get("RELAY_DEV_PHOENIX", "").strip()
    if not command or not Path(command).exists():
        raise SettingError(
            "RELAY_DEV_TRACES=1 needs Arize Phoenix: start the stack with `make dev TRACES=1`, "
            "which installs it into .relay/tools/phoenix"
        )
    return command


def _token() -> str:
    # A random internal token per stack: nothing outside it can talk to state.
    return secrets.token_urlsafe(24)


@dataclass
class StackConfig:
    data_dir: Path
    ports: Ports
    base_env: Mapping[str, str] = field(default_factory=dict)
    # Per-service environment: keys are a service name, a group (`runner`) or `all`.
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    redis_url: str | None = None  # external Redis; None starts an embedded one
    # The embedded Redis is a local Redis Cluster (relay_devstack.rediscluster),
    # on these ports (none: free ones).
    redis_cluster: bool = False
    redis_cluster_ports: tuple[int, ...] = ()
    database_url: str | None = None  # external Postgres; None starts an embedded one
    state_url: str | None = None  # an external state service (leave "state" out of services)
    # The stack's services to start (names of specs.CORE); None: all of them.
    services: tuple[str, ...] | None = None
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 8.0
    internal_token: str = field(default_factory=_token)
    dev_keys: bool = True  # create/reuse the dev user and admin keys once ready
    # `make dev` restarts a process that exits after this, doubling up to 30 s.
    restart_backoff_s: float = 1.0
    # The trace UI's command (`make dev TRACES=1`: Phoenix); None: no trace UI.
    trace_ui: str | None = None
    # The data folder is made 0700 (`make dev`'s .relay). Tests keep theirs
    # traversable: as root, Postgres runs as `nobody` from inside it.
    private: bool = False

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @classmethod
    def for_dev(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        """`make dev`: data under ./.relay (or $RELAY_DEV_DATA_DIR), dev ports, the
        user's environment passed through, external Redis/Postgres when their URL is set."""
        env = dict(os.environ if environ is None else environ)
        data_dir = Path(env.get(DATA_DIR_VAR) or Path.cwd() / ".relay").absolute()
        ports = Ports.from_env(env)
        mode = env.get(DEV_REDIS_VAR, "").strip().lower()
        if mode not in ("", "single", "cluster"):
            raise SettingError(f"{DEV_REDIS_VAR}={mode!r}: use `single` or `cluster`")
        cluster = mode == "cluster"
        return cls(
            data_dir=data_dir,
            ports=ports,
            redis_cluster=cluster,
            redis_cluster_ports=tuple(ports.redis + i for i in range(CLUSTER_NODES))
            if cluster
            else (),
            base_env=env,
            redis_url=env.get("RELAY_REDIS_URL") or None,
            database_url=env.get("RELAY_DATABASE_URL") or None,
            ready_timeout_s=_seconds(env, "RELAY_DEV_READY_TIMEOUT_S", 120.0),
            restart_backoff_s=_seconds(env, "RELAY_DEV_RESTART_BACKOFF_S", 1.0),
            trace_ui=_trace_ui(env),
            private=True,
        )

    @classmethod
    def for_tests(
        cls,
        data_dir: Path,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
        **kwargs: object,
    ) -> StackConfig:
        """A hermetic stack: free ports, no `RELAY_*` or `OTEL_*` from the caller's
        environment (a test that traces names its own OTLP endpoint)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "OTEL_"))}
        kwargs.setdefault("redis_cluster", cluster_wanted(os.environ.get(CLUSTER_ENV)))
        return cls(
            data_dir=data_dir,
            ports=Ports.free(),
            base_env=base,
            overrides={k: dict(v) for k, v in (overrides or {}).items()},
            **kwargs,  # type: ignore[arg-type]
        )
