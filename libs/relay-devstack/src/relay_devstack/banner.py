"""What `relay-dev` tells the developer: the ready banner (URLs, keys, where
the data lives, a curl walkthrough) and the one-line answers to the usual
problems (already running, a child died)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relay_devstack.stack import Stack


def short(path: Path) -> str:
    """`path` relative to the current folder when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def stack_info(stack: Stack, status: str) -> dict[str, Any]:
    """What the lock file publishes about a running stack."""
    names = ("gateway", "events", "state", "modelsim")
    return {"status": status, **{name: stack.url(name) for name in names}}


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
    if stack.redis is not None:
        where = short(stack.redis.data_dir)
        lines.append(f"  redis     {stack.redis_url}  (embedded, AOF in {where})")
    else:
        lines.append("  redis     external (RELAY_REDIS_URL)")
    if stack.postgres is not None:
        where = short(stack.postgres_dir)
        lines.append(f"  postgres  {stack.database_url}  (embedded, data in {where})")
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


def ready_banner(stack: Stack) -> str:
    lines = [
        "",
        "Relay is running.",
        f"  console   {stack.gateway_url}/console/  (sign in with a key below)",
        f"  gateway   {stack.gateway_url}  (API docs: {stack.gateway_url}/docs)",
        f"  events    {stack.events_url}",
        f"  state     {stack.state_url}  (internal)",
        f"  modelsim  {stack.modelsim_url}",
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


def child_died(stack: Stack, name: str) -> str:
    child = stack.child(name)
    code = child.proc.returncode if child else None
    where = f"; last lines of {short(stack.log_path(name))}:\n{stack.log_tail(name)}"
    return f"{name} stopped unexpectedly (exit code {code}){where}\nStopping everything."
