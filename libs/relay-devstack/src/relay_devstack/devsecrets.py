"""The dev stack's secrets and private files: nothing `make dev` writes is for other users.

A hostile probe found the dev stack open to every local user: Redis without a
password, Postgres trusting local connections, and the Redis append-only
file (every tenant's events), the service logs and the key files readable by
all. Now:

- the data folder (`.relay/`) is 0700 (`private_dir`, `relay-dev up`);
- the embedded Redis requires a password and Postgres password
  authentication (scram-sha-256); each password is generated once and kept
  in the data folder, 0600 (`secret`: `redis-password`, `postgres-password`),
  like the dev API keys;
- every file the stack writes is 0600: logs are opened so (`procs.Child`),
  and every child process runs with umask 077, so what Redis (its AOF) and
  the services create is too.

Passwords travel in configuration files (0600) and in the environment of the
processes that need them (readable by the same user only), never on a
command line, which `ps` shows to everyone.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from relay_devstack.procs import PRIVATE_UMASK

__all__ = [
    "POSTGRES_PASSWORD_FILE",
    "PRIVATE_UMASK",
    "REDIS_PASSWORD_FILE",
    "private_dir",
    "secret",
    "write_secret",
]

POSTGRES_PASSWORD_FILE = "postgres-password"  # noqa: S105 - a file name
REDIS_PASSWORD_FILE = "redis-password"  # noqa: S105 - a file name


def private_dir(path: Path) -> Path:
    """`path`, created if missing, readable by its owner only (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_secret(path: Path, value: str) -> None:
    """Write `value` to `path` readable by the owner only, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def secret(path: Path) -> str:
    """The secret kept at `path`, generated (and written 0600) the first time."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        os.chmod(path, 0o600)
        return value
    value = secrets.token_urlsafe(24)  # URL-safe: goes into redis:// and postgresql:// as is
    path.parent.mkdir(parents=True, exist_ok=True)
    write_secret(path, value)
    return value
