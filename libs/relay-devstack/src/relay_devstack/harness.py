"""Helpers for tests that start a Stack (all of it, or the part a service's
tests need) and drive it through its HTTP APIs.

    stack = start_test_stack(services=("state",), redis_url=url, database_url=db)
    client = api(stack, new_user(stack))          # httpx.Client on the gateway
    events = api(stack, key, service="events")    # ... or on another service
    run = wait_for(lambda: finished(client, run_id), timeout_s=30, what="run done")

`wait_for` polls a condition under a deadline (no sleep-and-hope) and fails
the test with what it was waiting for, and the last value seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx

from relay_devstack.stack import Stack, StackConfig

__all__ = [
    "aapi",
    "api",
    "async_wait_for",
    "discard",
    "new_user",
    "running_stack",
    "stack_data_dir",
    "start_test_stack",
    "wait_for",
]

T = TypeVar("T")


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def api(
    stack: Stack, key: str | None = None, *, service: str = "gateway", timeout_s: float = 30.0
) -> httpx.Client:
    """A client on `service` (gateway by default) sending `key` as a Bearer token."""
    return httpx.Client(base_url=stack.url(service), headers=_headers(key), timeout=timeout_s)


def aapi(
    stack: Stack, key: str | None = None, *, service: str = "gateway", timeout_s: float = 30.0
) -> httpx.AsyncClient:
    """The async twin of `api`."""
    return httpx.AsyncClient(base_url=stack.url(service), headers=_headers(key), timeout=timeout_s)


def new_user(stack: Stack, user_id: str | None = None) -> str:
    """A fresh user with its own API key (through state's internal API); returns the key."""
    return stack.new_key(user_id or f"user-{uuid.uuid4().hex[:12]}")


def _timeout_message(timeout_s: float, what: str, last: object) -> str:
    return f"timed out after {timeout_s}s waiting for {what} (last: {last!r})"


def wait_for(
    condition: Callable[[], T | None], *, timeout_s: float, what: str, interval_s: float = 0.05
) -> T:
    """Poll `condition` until it returns something truthy and return that value
    (typed without the None a condition returns while it waits)."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(_timeout_message(timeout_s, what, last))
        time.sleep(interval_s)


@overload
async def async_wait_for(
    condition: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
) -> T: ...


@overload
async def async_wait_for(
    condition: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
) -> T: ...


async def async_wait_for(
    condition: Callable[[], Any],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
) -> Any:
    """`wait_for` for async tests; `condition` may be a plain or an async function
    (overloaded: from one `T | Awaitable[T]` signature mypy infers no T for an
    async function)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        last = await value if inspect.isawaitable(value) else value
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(_timeout_message(timeout_s, what, last))
        await asyncio.sleep(interval_s)


def stack_data_dir(prefix: str = "relay-stack-") -> Path:
    """A fresh data folder under the system temp folder that `nobody` can
    traverse (Postgres runs as `nobody` when the tests run as root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)  # noqa: S103 - Postgres' user must traverse it
    return path


def start_test_stack(
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    *,
    data_dir: Path | None = None,
    **config: Any,
) -> Stack:
    """A started, hermetic stack on free ports, in `data_dir` or a temp folder of
    its own (stop() it; `discard` also removes the folder). `config` is any
    StackConfig field: `services=("state", "events")` with `redis_url=...` and
    `database_url=...` starts part of the stack beside servers the test has."""
    own_dir = data_dir is None
    folder = stack_data_dir() if data_dir is None else data_dir
    try:
        return Stack(StackConfig.for_tests(folder, overrides, **config)).start()
    except BaseException:
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def discard(stack: Stack) -> None:
    """Stop `stack` and remove its data folder."""
    stack.stop()
    shutil.rmtree(stack.config.data_dir, ignore_errors=True)


@contextlib.contextmanager
def running_stack(
    overrides: Mapping[str, Mapping[str, str]] | None = None, **config: Any
) -> Iterator[Stack]:
    """`start_test_stack` for a `with` block (a session fixture): discarded at the end."""
    stack = start_test_stack(overrides, **config)
    try:
        yield stack
    finally:
        discard(stack)
