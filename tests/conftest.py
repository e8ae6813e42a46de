"""Harness for the end-to-end and chaos tests: the whole Relay stack as real
processes (embedded Redis and Postgres, every service) on free ports, in a
temporary data folder, through the same `relay_devstack.Stack` as `make dev`.

Fixtures:

- `stack` (session): one shared stack; tests must not break it (no kills).
- `stack_factory` (module): `stack_factory(overrides={"runner": {...}})` starts
  a private stack with custom environment (chaos tests: short leases, drains,
  extra tools); every stack it made is stopped when the module ends.

Helpers (import them from `relay_devstack.harness`): `api(stack, key)`,
`aapi(stack, key)`, `new_user(stack)`, `wait_for(...)`, `async_wait_for(...)`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from relay_devstack.harness import start_test_stack
from relay_devstack.stack import Stack

StackFactory = Callable[..., Stack]


def _discard(stack: Stack) -> None:
    stack.stop()
    shutil.rmtree(stack.config.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    running = start_test_stack()
    yield running
    _discard(running)


@pytest.fixture(scope="module")
def stack_factory() -> Iterator[StackFactory]:
    made: list[Stack] = []

    def make(overrides: Mapping[str, Mapping[str, str]] | None = None, **config: Any) -> Stack:
        made.append(start_test_stack(overrides, **config))
        return made[-1]

    yield make
    for running in reversed(made):
        _discard(running)
