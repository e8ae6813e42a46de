"""Harness for the end-to-end and chaos tests: the whole Relay stack as real
processes (embedded Redis and Postgres, every service) on free ports, in a
temporary data folder, through the same `relay_devstack.Stack` as `make dev`.

Fixtures:

- `stack` (session): one shared stack; tests must not break it (no kills).
- `stack_factory` (module, from relay_devstack's pytest plugin):
  `stack_factory(overrides={"runner": {...}})` starts a private stack with
  custom environment (short leases, drains, extra tools); every stack it made
  is stopped when the module ends.

Helpers (import them from `relay_devstack.harness`): `api(stack, key)`,
`aapi(stack, key)`, `new_user(stack)`, `wait_for(...)`, `async_wait_for(...)`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relay_devstack.harness import running_stack
from relay_devstack.stack import Stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with running_stack() as running:
        yield running
