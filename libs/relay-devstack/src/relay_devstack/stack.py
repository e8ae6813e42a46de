"""The whole Relay stack as local processes: one code path for `make dev` and
for the end-to-end and chaos tests.

Start-up: embedded Redis (AOF, so events survive a restart; a local 3+3
Redis Cluster with `StackConfig.redis_cluster`) and Postgres unless
external URLs are given, each with a password kept in the data folder
(relay_devstack.devsecrets; `make dev`'s data folder is private, 0700; the
cluster's nodes all take the one Redis password); then every service but
state at once (each starts without its dependencies and becomes ready when
they are) while `relay-state migrate` runs; then state; then a wait on every
readiness probe under one deadline; then the dev keys.

Decisions:

- Children are forked by procs' long-lived spawner thread (PR_SET_PDEATHSIG
  follows the forking thread), so the control methods may be called from any
  thread, `asyncio.to_thread` included. A child is registered on that thread
  too, so a caller interrupted by a signal cannot orphan it.
- Stop in three phases: the front doors and runners first (runners drain and
  release their runs, which needs state, Redis and modelsim), then state and
  modelsim, then Redis and Postgres. Each phase signals every process at once
  and SIGKILLs what is left at its deadline, so the whole stop is bounded.
- Per-service control (stop, start, restart, kill, SIGSTOP/SIGCONT, extra
  services of any kind) is for tests; a process stopped or killed on purpose
  is not reported by `exited()`.
- A test may start part of the stack (`StackConfig.services`) beside servers
  it already has (`redis_url`, `database_url`, `state_url`): a service's own
  tests start the processes it talks to this way, with the same environment
  as `make dev`.
- The Stack does not restart what dies by itself: it reports it (`exited()`)
  and can start it again as it was (`respawn()`); `make dev` restarts through
  relay_devstack.supervise, tests decide for themselves.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import httpx

from relay_devstack.devkeys import DevKeys, ensure_dev_keys, new_key
from relay_devstack.devsecrets import (
    POSTGRES_PASSWORD_FILE,
    REDIS_PASSWORD_FILE,
    private_dir,
    secret,
)
from relay_devstack.procs import Child, free_port, on_spawner, open_private_log, stop_all
from relay_devstack.rediscluster import RedisClusterServer
from relay_devstack.servers import PostgresServer, RedisServer, relocated_data_dir
from relay_devstack.specs import (
    ServiceSpec,
    StackError,
    child_env,
    core_specs,
    script_path,
    service_spec,
    shared_env,
)
from relay_devstack.stackconfig import StackConfig
from relay_devstack.traceui import TraceUI

__all__ = ["Stack", "StackConfig", "StackError"]

logger = logging.getLogger(__name__)

# Stop order by kind: the front doors and runners, then what they need.
FRONT = ("gateway", "events", "runner")
BACK = ("state", "modelsim")


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.specs: dict[str, ServiceSpec] = core_specs(
            config.ports, database_url="", only=config.services
        )
        self.children: dict[str, Child] = {}
        self.redis: RedisServer | RedisClusterServer | None = None
        self.postgres: PostgresServer | None = None
        self.trace_ui: TraceUI | None = None
        self.keys: DevKeys | None = None
        self._down_on_purpose: set[str] = set()
        self._started = False

    # --- addresses and keys -------------------------------------------------

    def url(self, name: str) -> str:
        """The public URL of a service (a runner's: its management port, its only one)."""
        return self.specs[name].url()

    def management_url(self, name: str) -> str:
        """Where a service answers /livez, /readyz, /metrics and the detailed /healthz."""
        return self.specs[name].management_url()

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    @property
    def events_url(self) -> str:
        return self.url("events")

    @property
    def state_url(self) -> str:
        return self.config.state_url or self.url("state")

    @property
    def modelsim_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ports.modelsim}"

    @property
    def redis_url(self) -> str:
        if self.redis is not None:
            return self.redis.url
        return self.config.redis_url or ""

    @property
    def database_url(self) -> str:
        if self.postgres is not None:
            return self.postgres.url
        return self.config.database_url or ""

    @property
    def postgres_dir(self) -> Path:
        """Where the embedded cluster lives (relocated when root cannot share it)."""
        return relocated_data_dir(self.config.data_dir / "postgres")

    @property
    def api_key(self) -> str:
        return self._keys().api_key

    @property
    def admin_key(self) -> str:
        return self._keys().admin_key

    def _keys(self) -> DevKeys:
        if self.keys is None:
            raise StackError("no dev keys: the stack is not started (or dev_keys=False)")
        return self.keys

    def new_key(self, user_id: str, role: str = "user") -> str:
        """A fresh API key for `user_id`, minted through state's internal API."""
        return new_key(
            state_url=self.state_url,
            internal_token=self.config.internal_token,
            user_id=user_id,
            role="admin" if role == "admin" else "user",
        )

    def pid(self, name: str) -> int:
        return self.children[name].pid

    def log_path(self, name: str) -> Path:
        child = self.child(name)
        return child.log_path if child else self.config.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 30) -> str:
        child = self.child(name)
        return child.tail(lines) if child else ""

    def child(self, name: str) -> Child | None:
        """The process of a service, or of the embedded `redis` / `postgres`."""
        servers = {"redis": self.redis, "postgres": self.postgres, "traces": self.trace_ui}
        if name in servers:
            server = servers[name]
            return server.child if server is not None else None
        return self.children.get(name)

    # --- whole stack ----------------------------------------------------------

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Stack:
        """Start everything and wait until every service is ready; on failure
        stop what was started and raise StackError naming the culprit."""
        if self._started:
            raise StackError("the stack is already started")
        if self.config.private:
            private_dir(self.config.data_dir)  # `make dev`: .relay is its user's only
        private_dir(self.config.log_dir)
        self._started = True
        try:
            self._start_infra()
            # Everything but state starts while migrations run: each service
            # starts without its dependencies, and their imports overlap.
            for name in self.specs:
                if name != "state":
                    self._spawn(name)
            if "state" in self.specs:
                self._migrate()
                self._spawn("state")
            logger.info("started %s; waiting until ready", ", ".join(self.specs))
            self.wait_ready(self.specs, timeout_s=self.config.ready_timeout_s)
            if self.trace_ui is not None:
                self.trace_ui.wait_ready(timeout_s=self.config.ready_timeout_s)
            if self.config.dev_keys and ("state" in self.specs or self.config.state_url):
                self.keys = ensure_dev_keys(
                    state_url=self.state_url,
                    internal_token=self.config.internal_token,
                    key_dir=self.config.data_dir,
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process within a bounded time; safe to call more than once."""
        if not self._started:
            return
        on_spawner(lambda: None)  # let a spawn in progress register its child
        for kinds in (FRONT, BACK, None):
            phase = [n for n in self.children if kinds is None or self.specs[n].kind in kinds]
            stop_all([self.children.pop(n) for n in phase], self.config.stop_timeout_s)
        for server in (self.redis, self.postgres, self.trace_ui):
            if server is not None:
                server.stop()
        self._down_on_purpose.clear()
        self._started = False

    def exit_code(self, name: str) -> int | None:
        """The exit code of a service, `redis` or `postgres` (None: running or never started)."""
        child = self.child(name)
        return child.proc.poll() if child is not None else None

    def respawn(self, name: str) -> None:
        """Start a process that exited again, with the same command and environment
        (Redis and Postgres: the same port and data). Does not wait for a service
        to be ready; waits for Redis and Postgres, raising if they do not come up."""
        servers = {"redis": self.redis, "postgres": self.postgres}
        if name in servers:
            server = servers[name]
            if server is None:
                raise StackError(f"{name} is external: it cannot be restarted from here")
            server.stop()  # reaps the dead process, closes its log
            server.start()
            return
        if name in self.children and self.children[name].alive():
            raise StackError(f"{name} is running (pid {self.pid(name)})")
        self._spawn(name)

    def exited(self) -> list[str]:
        """Processes that died without being stopped on purpose."""
        dead = [
            name
            for name, child in self.children.items()
            if not child.alive() and name not in self._down_on_purpose
        ]
        for name in ("redis", "postgres"):
            child = self.child(name)
            if child is not None and not child.alive():
                dead.append(name)
        return dead

    # --- start-up steps ---------------------------------------------------------

    def _start_infra(self) -> None:
        ports = self.config.ports
        if self.config.trace_ui is not None:  # slow to start: waited for after the services
            data = self.config.data_dir / "phoenix"
            self.trace_ui = TraceUI(self.config.trace_ui, data, ports.traces).start()
        if self.config.redis_url is None:
            password = secret(self.config.data_dir / REDIS_PASSWORD_FILE)
            if self.config.redis_cluster:
                self.redis = RedisClusterServer(
                    self.config.data_dir / "redis-cluster",
                    persist=True,
                    password=password,
                    ports=list(self.config.redis_cluster_ports),
                )
            else:
                self.redis = RedisServer(
                    self.config.data_dir / "redis",
                    port=ports.redis,
                    persist=True,
                    password=password,
                )
            self.redis.start()
            logger.info(
                "redis ready on port %s (password in %s)", self.redis.port, REDIS_PASSWORD_FILE
            )
        if self.config.database_url is None and "state" in self.specs:
            password = secret(self.config.data_dir / POSTGRES_PASSWORD_FILE)
            self.postgres = PostgresServer(
                self.postgres_dir, port=ports.postgres, password=password
            )
            self.postgres.start()
            logger.info(
                "postgres ready on port %s (password in %s)", ports.postgres, POSTGRES_PASSWORD_FILE
            )
        if "state" in self.specs:
            self.specs["state"].env["RELAY_DATABASE_URL"] = self.database_url

    def _shared_env(self) -> dict[str, str]:
        env = shared_env(
            redis_url=self.redis_url,
            state_url=self.state_url,
            internal_token=self.config.internal_token,
        )
        if self.trace_ui is not None:  # every service traces into it
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.trace_ui.url
        return env

    def _env(self, name: str) -> dict[str, str]:
        return child_env(
            self.specs[name],
            base=self.config.base_env,
            shared=self._shared_env(),
            overrides=self.config.overrides,
        )

    def _migrate(self) -> None:
        log_path = self.config.log_dir / "migrate.log"
        with open_private_log(log_path) as log:
            done = subprocess.run(
                [script_path("relay-state"), "migrate"],
                env=self._env("state"),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
        if done.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise StackError(
                f"`relay-state migrate` failed (exit {done.returncode}); "
                f"last lines of {log_path}:\n{tail}"
            )
        logger.info("database migrated")

    def _spawn(self, name: str) -> Child:
        spec = self.specs[name]
        argv = [script_path(spec.script)]
        env = self._env(name)

        log_path = self.config.log_dir / f"{name}.log"

        previous = self.children.get(name)
        if previous is not None:
            previous.stop(timeout_s=0)  # a dead predecessor: reap it, close its log

        def spawn() -> Child:
            # Registered on the spawner thread, so an interrupted caller cannot orphan it.
            child = Child(name, argv, log_path=log_path, env=env)
            self.children[name] = child
            return child

        self._down_on_purpose.discard(name)
        return on_spawner(spawn)

    # --- readiness ------------------------------------------------------------------

    def wait_ready(
        self, names: Iterable[str] | None = None, *, timeout_s: float = 30.0, alive: bool = False
    ) -> None:
        """Poll each service's readiness probe (`alive`: its liveness probe,
        for a service started without its dependencies) until all
        answer 200, or raise StackError naming the ones that did not (with
        their probe answer and log). By default: every service not stopped on
        purpose."""
        if names is None:
            names = [n for n in self.children if n not in self._down_on_purpose]
        pending = {n: "no answer yet" for n in names}
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as http:
            while pending:
                for name in sorted(pending):
                    self._raise_if_exited(name)
                    answer = self._probe(http, name, alive=alive)
                    if answer == "200":
                        del pending[name]
                    else:
                        pending[name] = answer
                if pending and time.monotonic() > deadline:
                    raise StackError(self._not_ready_report(pending, timeout_s))
                if pending:
                    time.sleep(0.1)

    def _probe(self, http: httpx.Client, name: str, *, alive: bool = False) -> str:
        spec = self.specs[name]
        try:
            resp = http.get(spec.management_url() + (spec.alive_path if alive else spec.ready_path))
        except httpx.HTTPError as exc:
            return f"unreachable ({type(exc).__name__})"
        return "200" if resp.status_code == 200 else f"{resp.status_code} {resp.text[:300]}"

    def _raise_if_exited(self, name: str) -> None:
        child = self.children[name]
        if not child.alive():
            raise StackError(
                f"{name} exited with code {child.proc.returncode} while starting; "
                f"last lines of {child.log_path}:\n{child.tail(30)}"
            )

    def _not_ready_report(self, pending: Mapping[str, str], timeout_s: float) -> str:
        parts = [f"not ready after {timeout_s:.0f}s: {', '.join(sorted(pending))}"]
        for name, answer in sorted(pending.items()):
            spec = self.specs[name]
            parts.append(
                f"\n{name} ({spec.management_url()}{spec.ready_path}) answered: {answer}\n"
                f"last lines of {self.log_path(name)}:\n{self.log_tail(name)}"
            )
        return "\n".join(parts)

    # --- per-service control (chaos tests) ------------------------------------------

    def stop_service(self, name: str, *, timeout_s: float | None = None) -> int | None:
        """SIGTERM one service and wait (SIGKILL at the deadline); returns its exit code."""
        self._down_on_purpose.add(name)
        child = self.children[name]
        return child.stop(timeout_s=timeout_s or self.config.stop_timeout_s)

    def start_service(
        self, name: str, *, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> None:
        """(Re)start one service, with extra environment kept for later restarts."""
        if name in self.children and self.children[name].alive():
            raise StackError(f"{name} is already running (pid {self.pid(name)})")
        if env:
            self.config.overrides.setdefault(name, {}).update(env)
        self._spawn(name)
        if wait:
            self.wait_ready([name], timeout_s=self.config.ready_timeout_s)

    def restart(
        self, name: str, *, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> None:
        self.stop_service(name)
        self.start_service(name, env=env, wait=wait)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (SIGKILL, SIGSTOP, SIGCONT, SIGTERM...) to one service.
        SIGKILL waits until the process is gone."""
        child = self.children[name]
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            self._down_on_purpose.add(name)
        child.signal(sig)
        if sig == signal.SIGKILL:
            child.proc.wait(10)

    def wait_exit(self, name: str, timeout_s: float) -> int:
        """Wait for one service to exit (after a SIGTERM, say); its exit code.
        Raises subprocess.TimeoutExpired if it is still running at the deadline."""
        return self.children[name].proc.wait(timeout_s)

    def start_extra(
        self,
        kind: str,
        name: str | None = None,
        *,
        pool: str = "",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> str:
        """Start one more process of `kind` (gateway, events, state, runner in
        `pool`, modelsim) on `port` (default: a free one), wired to this stack,
        with `env` on top; returns its name. `wait=False` returns at once (see
        wait_ready)."""
        name = name or f"{kind}-{pool + '-' if pool else ''}{len(self.specs)}"
        if name in self.specs:
            raise StackError(f"a service named {name} exists already")
        self.specs[name] = service_spec(
            kind,
            name,
            port or free_port(),
            ports=self.config.ports,
            database_url=self.database_url,
            pool=pool,
            management_port=free_port(),
        )
        self.start_service(name, env=env, wait=wait)
        return name

    def start_extra_runner(
        self,
        pool: str = "background",
        name: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> str:
        """Start one more runner process in `pool`; returns its service name."""
        return self.start_extra("runner", name, pool=pool, env=env, wait=wait)
