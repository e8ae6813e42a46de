"""What `relay-dev` tells the developer: the ready banner (URLs, keys, where
the data lives, a curl walkthrough), what `relay-dev status` shows, and the
one-line answers to the usual problems (already running, a crash loop)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from relay_devstack.devsecrets import POSTGRES_PASSWORD_FILE, REDIS_PASSWORD_FILE
from relay_devstack.rediscluster import RedisClusterServer
from relay_devstack.stack import Stack
from relay_devstack.supervise import CrashLoop, Supervisor

SERVICE_URLS = ("gateway", "events", "state", "modelsim")


def short(path: Path) -> str:
    """`path` relative to the current folder when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def masked(url: str) -> str:
    """`url` with its password replaced by `***` (the terminal is not private)."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def stack_info(stack: Stack, status: str, supervisor: Supervisor | None = None) -> dict[str, Any]:
    """What the lock file publishes about a running stack: its URLs and, once
    supervised, every process with its pid and restart count."""
    info: dict[str, Any] = {"status": status, **{n: stack.url(n) for n in SERVICE_URLS}}
    if supervisor is not None:
        restarts = supervisor.restarts()
        processes: dict[str, dict[str, int]] = {}
        for name in ["redis", "postgres", *stack.specs]:
            child = stack.child(name)
            if child is not None:
                processes[name] = {"pid": child.pid, "restarts": restarts.get(name, 0)}
                last_exit = supervisor.last_exit(name)
                if last_exit is not None:
                    processes[name]["last_exit"] = last_exit
        info["processes"] = processes
    return info


def process_lines(info: dict[str, Any]) -> list[str]:
    """`relay-dev status`'s table of processes (pid, restarts, last exit code)."""
    lines = []
    for name, proc in (info.get("processes") or {}).items():
        last = f"  (last exit code {proc['last_exit']})" if "last_exit" in proc else ""
        lines.append(
            f"  {name:<20} pid {proc.get('pid', '?'):<8} restarts {proc.get('restarts', 0)}{last}"
        )
    return lines


def already_running(info: dict[str, Any], lock_path: Path) -> str:
    pid = info.get("pid", "?")
    gateway = info.get("gateway")
    where = f" — gateway {gateway}" if gateway else ""
    starting = " (still starting)" if info.get("status") == "starting" else ""
    return (
        f"Relay is already running{starting} (pid {pid}){where}; "
        f"stop it with Ctrl-C in its terminal (lock: {short(lock_path)})"
    )


def _data_lines(stack: Stack) -> list[str]:
    cfg = stack.config
    lines = [f"  data      {short(cfg.data_dir)}  (logs in {short(cfg.log_dir)})"]
    if isinstance(stack.redis, RedisClusterServer):
        where, ports = short(stack.redis.data_dir), stack.redis.ports
        secret_file = short(cfg.data_dir / REDIS_PASSWORD_FILE)
        lines.append(
            f"  redis     {masked(stack.redis_url)}  (embedded Redis Cluster, 3 primaries + 3 "
            f"replicas on ports {min(ports)}-{max(ports)}, AOF in {where}; "
            f"password in {secret_file})"
        )
    elif stack.redis is not None:
        where = short(stack.redis.data_dir)
        secret_file = short(cfg.data_dir / REDIS_PASSWORD_FILE)
        lines.append(
            f"  redis     {masked(stack.redis_url)}  (embedded, AOF in {where}; "
            f"password in {secret_file})"
        )
    else:
        lines.append("  redis     external (RELAY_REDIS_URL)")
    if stack.postgres is not None:
        where = short(stack.postgres_dir)
        secret_file = short(cfg.data_dir / POSTGRES_PASSWORD_FILE)
        lines.append(
            f"  postgres  {masked(stack.database_url)}  (embedded, data in {where}; "
            f"password in {secret_file})"
        )
        if stack.postgres_dir != cfg.data_dir / "postgres":
            lines.append(
                "            relocated under the temp folder: running as root, Postgres runs as "
                f"`nobody`, which cannot reach {short(cfg.data_dir)}"
            )
    else:
        lines.append("  postgres  external (RELAY_DATABASE_URL)")
    return lines


def _curl_lines(stack: Stack) -> list[str]:
    key_file = short(stack.keys.api_key_path) if stack.keys else "<key file>"
    return [
        "Try it:",
        f"  export RELAY_URL={stack.gateway_url} RELAY_API_KEY=$(cat {key_file})",
        '  .venv/bin/relay chat "Hello, Relay"',
        "or with curl:",
        f"  KEY=$(cat {key_file})",
        f'  RUN=$(curl -s -X POST {stack.gateway_url}/v1/runs -H "Authorization: Bearer $KEY" \\',
        "        -H 'Content-Type: application/json' -d '{\"message\": \"Hello, Relay\"}' \\",
        "        | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"run_id\"])')",
        f'  curl -N -H "Authorization: Bearer $KEY" {stack.events_url}/v1/runs/$RUN/events',
    ]


def _traces_line(stack: Stack) -> str:
    if stack.trace_ui is None:
        return "  traces    off  (`make dev TRACES=1`: a trace UI, Arize Phoenix, for every run)"
    return f"  traces    {stack.trace_ui.url}  (Arize Phoenix: one trace per run; open it)"


def _management_line(stack: Stack) -> str:
    names = [n for n in ("gateway", "events", "state") if n in stack.specs]
    ports = ", ".join(f"{n} {stack.specs[n].management_port}" for n in names)
    return f"  probes and /metrics on the management ports: {ports}"


def ready_banner(stack: Stack) -> str:
    lines = [
        "",
        "Relay is running.",
        f"  console   {stack.gateway_url}/console/  (sign in with a key below)",
        f"  gateway   {stack.gateway_url}  (API docs: {stack.gateway_url}/docs)",
        f"  events    {stack.events_url}",
        f"  state     {stack.state_url}  (internal)",
        f"  modelsim  {stack.modelsim_url}",
        _traces_line(stack),
        _management_line(stack),
        *_data_lines(stack),
        "",
    ]
    if stack.keys is not None:
        lines += [
            f"Dev API key (user):    {stack.keys.api_key}",
            f"                       saved in {short(stack.keys.api_key_path)}",
            f"Dev admin key (admin): {stack.keys.admin_key}",
            f"                       saved in {short(stack.keys.admin_key_path)}",
            "",
        ]
    lines += [*_curl_lines(stack), "", "Stop everything with Ctrl-C.", ""]
    return "\n".join(lines)


def crash_looped(stack: Stack, loop: CrashLoop) -> str:
    where = f"last lines of {short(stack.log_path(loop.name))}:\n{stack.log_tail(loop.name)}"
    return f"{loop}; {where}\nStopping everything."
