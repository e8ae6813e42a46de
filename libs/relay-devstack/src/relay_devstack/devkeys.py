"""The dev API keys: a user key and an admin key, kept in files (mode 0600)
and reused across restarts while state still accepts them.

Why reuse: a developer's scripts and shell history keep working after a
restart of `make dev`; a key is only minted again when its file is missing or
state no longer knows it (a wiped database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from relay_core.state_api import CreateKeyIn, Role
from relay_core.state_client import StateClient, StateError, StateUnavailable
from relay_devstack.devsecrets import write_secret

logger = logging.getLogger(__name__)
T = TypeVar("T")

USER_KEY_FILE = "dev-api-key"
ADMIN_KEY_FILE = "dev-admin-key"
DEV_USER_ID = "dev-user"
DEV_ADMIN_ID = "dev-admin"


@dataclass(frozen=True)
class DevKeys:
    api_key: str
    admin_key: str
    api_key_path: Path
    admin_key_path: Path


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion, also from code already inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _read(path: Path) -> str | None:
    with contextlib.suppress(OSError):
        return path.read_text().strip() or None
    return None


async def _still_valid(client: StateClient, key: str, role: Role) -> bool:
    try:
        principal = await client.verify_key(key)
    except StateUnavailable:
        raise
    except StateError:
        return False
    return principal.role == role


async def _ensure_key(client: StateClient, path: Path, user_id: str, role: Role) -> str:
    existing = _read(path)
    if existing and await _still_valid(client, existing, role):
        return existing
    created = await client.create_key(CreateKeyIn(user_id=user_id, role=role, name="make dev"))
    write_secret(path, created.api_key)
    logger.info("created dev %s key", role, extra={"path": str(path)})
    return created.api_key


async def _ensure_all(state_url: str, token: str, key_dir: Path) -> DevKeys:
    client = StateClient(state_url, token, timeout_s=10.0)
    try:
        user = await _ensure_key(client, key_dir / USER_KEY_FILE, DEV_USER_ID, "user")
        admin = await _ensure_key(client, key_dir / ADMIN_KEY_FILE, DEV_ADMIN_ID, "admin")
    finally:
        await client.aclose()
    return DevKeys(user, admin, key_dir / USER_KEY_FILE, key_dir / ADMIN_KEY_FILE)


def ensure_dev_keys(*, state_url: str, internal_token: str, key_dir: Path) -> DevKeys:
    """Reuse the keys in `key_dir` if state accepts them, else create and save new ones."""
    key_dir.mkdir(parents=True, exist_ok=True)
    return run_sync(_ensure_all(state_url, internal_token, key_dir))


def new_key(*, state_url: str, internal_token: str, user_id: str, role: Role = "user") -> str:
    """A fresh API key for `user_id` (tests: a new user per test)."""

    async def create() -> str:
        client = StateClient(state_url, internal_token, timeout_s=10.0)
        try:
            return (await client.create_key(CreateKeyIn(user_id=user_id, role=role))).api_key
        finally:
            await client.aclose()

    return run_sync(create())
