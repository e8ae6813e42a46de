"""`relay-dev`: the command behind `make dev`.

    relay-dev up          start the whole stack, print URLs and keys, supervise it
    relay-dev status      is a stack running for this data folder? its URLs, processes
    relay-dev clean-data  delete Redis/Postgres data, logs and dev keys

Decisions:

- SIGINT, SIGTERM and SIGHUP raise `Stopping` in the main thread, which
  unwinds start-up or the wait loop into `Stack.stop()`; further signals are
  ignored while stopping, so a second Ctrl-C cannot leave half the stack up.
  Children run in their own process groups: the terminal's Ctrl-C reaches only
  this process, which stops them in order.
- A process that exits on its own (a service, the embedded Redis or Postgres)
  is restarted like Kubernetes restarts a container: same command and
  environment, exponential back-off, one line on the terminal saying so
  (relay_devstack.supervise). Restart counts go into the lock file, where
  `relay-dev status` reads them. Only a crash loop stops everything, with the
  process's log tail and exit code 1, so `make dev` never keeps running half
  a stack.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import time
from types import FrameType
from typing import NoReturn

import httpx

from relay_devstack.banner import (
    SERVICE_URLS,
    already_running,
    crash_looped,
    process_lines,
    ready_banner,
    stack_info,
)
from relay_devstack.console import complain, say
from relay_devstack.devlock import DevLock, is_locked, read_info
from relay_devstack.devsecrets import private_dir
from relay_devstack.ports import SettingError, ensure_free
from relay_devstack.servers import relocated_data_dir
from relay_devstack.stack import Stack, StackConfig
from relay_devstack.supervise import CrashLoop, RestartPolicy, Supervisor

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_S = 0.2
KEEP_ON_CLEAN = frozenset({"tools", "dev.lock"})  # the uv bootstrap is not data


class ElapsedFormatter(logging.Formatter):
    """`relay-dev [  3.2s] message`: progress lines with the time since start."""

    def format(self, record: logging.LogRecord) -> str:
        return f"relay-dev [{record.relativeCreated / 1000:5.1f}s] {record.getMessage()}"


class Stopping(BaseException):
    """A stop signal arrived (BaseException: no `except Exception` swallows it)."""


def raise_on_stop_signals() -> None:
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Stopping(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def ignore_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def ports_to_check(config: StackConfig) -> dict[str, int]:
    ports = config.ports.as_dict()
    if config.redis_url:
        del ports["redis"]
    if config.database_url:
        del ports["postgres"]
    if config.trace_ui is None:
        del ports["traces"]
    return ports


def supervise(stack: Stack, lock: DevLock) -> NoReturn:
    """Restart what exits until a crash loop (CrashLoop) or a stop signal (Stopping)."""
    policy = RestartPolicy(first_delay_s=stack.config.restart_backoff_s)
    supervisor = Supervisor(stack, policy)
    lock.publish(stack_info(stack, "ready", supervisor))
    while True:
        before = supervisor.restarts()
        exits = supervisor.poll()
        for exit_ in exits:
            complain(f"relay-dev: {exit_.notice()}")
        if exits or supervisor.restarts() != before:
            lock.publish(stack_info(stack, "ready", supervisor))
        time.sleep(POLL_S)


def run(stack: Stack, lock: DevLock) -> int:
    say(f"Starting Relay (data in {stack.config.data_dir}) ...")
    started = time.monotonic()
    try:
        stack.start()
        say(ready_banner(stack))
        say(f"Ready in {time.monotonic() - started:.1f}s.")
        supervise(stack, lock)
    except CrashLoop as loop:
        complain(crash_looped(stack, loop))
        return 1
    except Stopping as sig:
        say(f"\n{sig}: stopping Relay ...")
        return 0
    except (RuntimeError, OSError) as exc:  # StackError, or a server that would not start
        complain(f"Relay could not start: {exc}")
        return 1
    finally:
        ignore_signals()
        stopped = time.monotonic()
        stack.stop()
        say(f"Relay stopped in {time.monotonic() - stopped:.1f}s.")


def cmd_up() -> int:
    config = StackConfig.for_dev()
    private_dir(config.data_dir)  # before anything is written in it
    lock = DevLock(config.data_dir / "dev.lock")
    raise_on_stop_signals()
    if not lock.acquire():
        complain(already_running(read_info(lock.path), lock.path))
        return 1
    try:
        stack = Stack(config)
        lock.publish(stack_info(stack, "starting"))
        ensure_free(ports_to_check(config))
        return run(stack, lock)
    finally:
        lock.release()


def cmd_status() -> int:
    config = StackConfig.for_dev()
    lock_path = config.data_dir / "dev.lock"
    if not is_locked(lock_path):
        say(f"Relay is not running (data in {config.data_dir}).")
        return 1
    info = read_info(lock_path)
    say(f"Relay is running (pid {info.get('pid', '?')}, {info.get('status', '?')}).")
    with httpx.Client(timeout=1.0) as http:
        for name in SERVICE_URLS:
            url = info.get(name)
            if url:
                say(f"  {name:<9} {url}  {probe(http, url)}")
    lines = process_lines(info)
    if lines:
        say("Processes:")
        for line in lines:
            say(line)
    return 0


def probe(http: httpx.Client, url: str) -> str:
    try:
        resp = http.get(url + "/healthz")
    except httpx.HTTPError:
        return "(not answering)"
    return "(up)" if resp.status_code == 200 else f"(healthz {resp.status_code})"


def cmd_clean_data() -> int:
    config = StackConfig.for_dev()
    if is_locked(config.data_dir / "dev.lock"):
        complain("Relay is running on this data: stop it first (Ctrl-C in its terminal).")
        return 1
    relocated = relocated_data_dir(config.data_dir / "postgres")
    targets = [p for p in config.data_dir.glob("*") if p.name not in KEEP_ON_CLEAN]
    if relocated != config.data_dir / "postgres":
        targets.append(relocated.parent)
    for path in targets:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
        say(f"removed {path}")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="relay-dev", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "status", "clean-data"])
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ElapsedFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("relay_devstack").setLevel(logging.INFO)  # progress, not HTTP chatter
    commands = {"up": cmd_up, "status": cmd_status, "clean-data": cmd_clean_data}
    try:
        code = commands[args.command]()
    except SettingError as exc:  # a port taken, a bad RELAY_DEV_* value
        complain(str(exc))
        code = 1
    except Stopping:  # a signal before anything was started
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
