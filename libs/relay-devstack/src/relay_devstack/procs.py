"""Child processes that never outlive the supervisor.

Every child runs with umask 077 and logs to a 0600 file (relay_devstack.devsecrets).

Every child gets PR_SET_PDEATHSIG (Linux), so even a `kill -9` of `make dev`
or of a test run leaves no server behind; a normal stop sends SIGTERM (or the
server's own fast-shutdown signal) and escalates to SIGKILL after a deadline.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the
process: a server started from `asyncio.to_thread` in a test would die with
that worker thread. So every child is forked by one long-lived daemon thread
(`on_spawner`), which ends only with the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from queue import SimpleQueue
from typing import IO, Any, TypeVar

_PR_SET_PDEATHSIG = 1
T = TypeVar("T")
PRIVATE_UMASK = 0o077  # relay_devstack.devsecrets: files 0600, folders 0700


def open_private_log(path: Path) -> IO[bytes]:
    """`path` for appending, readable by its owner only (0600, also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


class _Spawner:
    """One daemon thread that runs every fork, so PDEATHSIG means "the process died"."""

    def __init__(self) -> None:
        self._jobs: SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._loop, name="relay-spawner", daemon=True)
                thread.start()
                self._thread = thread
        done: Future[T] = Future()
        self._jobs.put((fn, done))
        return done.result()

    def _loop(self) -> None:
        while True:
            fn, done = self._jobs.get()
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)


_SPAWNER = _Spawner()


def on_spawner(fn: Callable[[], T]) -> T:
    """Run `fn` on the spawner thread (inline when already there) and return its result."""
    return _SPAWNER.run(fn)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# Why not bind(0): the kernel answers with a port of the EPHEMERAL range, the
# one every outgoing connection also takes its local port from. Between the
# check and the server's own bind, a client connection anywhere on the machine
# (a test's thousand streams, another test run) can take that port, and the
# server fails with "address already in use" (seen in a full `make test` beside
# other runs). A random port below the ephemeral range is never handed to an
# outgoing connection, and a process never hands out the same one twice.
_PORT_FLOOR = 20000
_given: set[int] = set()
_given_lock = threading.Lock()


def _ephemeral_floor() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, _PORT_FLOOR + 1000)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on, outside the ephemeral range (see above)."""
    ceiling = _ephemeral_floor()
    rng = random.SystemRandom()
    with _given_lock:
        for _ in range(200):
            port = rng.randrange(_PORT_FLOOR, ceiling)
            if port not in _given and _bindable(port):
                _given.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded range
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLUSTER_BUS_OFFSET = 10000  # a Redis Cluster node also listens on its port + 10000


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, both below the
    ephemeral range."""
    ceiling = max(_ephemeral_floor() - CLUSTER_BUS_OFFSET, _PORT_FLOOR + 1000)
    rng = random.SystemRandom()
    with _given_lock:
        for _ in range(500):
            port = rng.randrange(_PORT_FLOOR, ceiling)
            bus = port + CLUSTER_BUS_OFFSET
            if {port, bus} & _given or not (_bindable(port) and _bindable(bus)):
                continue
            _given.update((port, bus))
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_until(
    check: Callable[[], bool], *, timeout_s: float, what: str, step_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class Child:
    """A supervised child process with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
        run_as: tuple[int, int] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_signal = stop_signal
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open_private_log(log_path)
        kwargs: dict[str, Any] = {}
        if run_as is not None:
            kwargs.update(user=run_as[0], group=run_as[1], extra_groups=[])
        self.proc = on_spawner(lambda: self._popen(env, cwd, kwargs))

    def _popen(
        self, env: Mapping[str, str] | None, cwd: Path | None, kwargs: dict[str, Any]
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            preexec_fn=_die_with_parent,
            # Its own process group: a Ctrl-C in the terminal reaches only the
            # supervisor, which then stops the children in order.
            process_group=0,
            # What it creates (Redis's AOF, a service's files) is its user's only.
            umask=PRIVATE_UMASK,
            **kwargs,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 5.0) -> int | None:
        if self.alive():
            self.signal(self.stop_signal)
            self.signal(signal.SIGCONT)  # a SIGSTOPped child handles it once continued
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            data = self.log_path.read_bytes()[-8192:].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])


def stop_all(children: Sequence[Child], timeout_s: float = 8.0) -> None:
    """Signal every child at once, wait for all under one deadline, then SIGKILL."""
    for child in children:
        if child.alive():
            child.signal(signal.SIGCONT)  # a SIGSTOPped child cannot handle SIGTERM
            child.signal(child.stop_signal)
    deadline = time.monotonic() + timeout_s
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(max(0.0, deadline - time.monotonic()))
    for child in children:
        child.stop(timeout_s=0)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind `port` now (SO_REUSEADDR, like uvicorn and Redis)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux /proc), for leak checks."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def reachable_by_others(path: Path) -> bool:
    """Whether an unprivileged user can traverse every folder down to `path`."""
    path = path.resolve()
    for folder in [*reversed(path.parents), path]:
        if folder.exists() and not os.stat(folder).st_mode & 0o001:
            return False
    return True
