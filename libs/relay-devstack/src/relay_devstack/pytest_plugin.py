"""pytest fixtures: real Redis and Postgres servers started for the test
session, and Relay's own processes started the one way (relay_devstack.Stack).

Registered by the repository's root `conftest.py`. Servers listen on free
ports under a temporary folder and stop when the session ends (and, through
PR_SET_PDEATHSIG, even if pytest is killed).

- `stack_factory` (module): `stack_factory(overrides, **config)` starts a
  Stack (all of it, or `services=(...)` beside `redis_url`/`database_url`/
  `state_url` the test has) and discards every one it made when the module
  ends. Session-wide stacks use `harness.running_stack` in a fixture.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from relay_devstack.harness import discard, start_test_stack
from relay_devstack.rediscluster import RedisClusterServer, start_test_redis
from relay_devstack.servers import PostgresServer, RedisServer
from relay_devstack.stack import Stack

StackFactory = Callable[..., Stack]


@pytest.fixture(scope="session")
def relay_tmp() -> Iterator[Path]:
    # Under the system temp folder with o+x so Postgres can run as `nobody` when root.
    path = Path(tempfile.mkdtemp(prefix="relay-test-"))
    os.chmod(path, 0o755)  # noqa: S103 - nobody must traverse it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(relay_tmp: Path) -> Iterator[RedisServer | RedisClusterServer]:
    """The session's Redis: one server, or a local cluster under `make test-redis-cluster`."""
    server = start_test_redis(relay_tmp / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_db_url(
    redis_server: RedisServer | RedisClusterServer, relay_tmp: Path
) -> Iterator[Callable[[int], str]]:
    """`redis_db_url(n)`: a Redis namespace of its own, for tests whose queues must
    not see other packages' runs: database `n` of the session's server, or (a
    cluster has only database 0) a cluster of its own per `n`."""
    clusters: dict[int, RedisClusterServer] = {}

    def url(db: int) -> str:
        if not isinstance(redis_server, RedisClusterServer):
            return f"{redis_server.url.rpartition('/')[0]}/{db}"
        if db not in clusters:
            clusters[db] = RedisClusterServer(relay_tmp / f"redis-db{db}").start()
        return clusters[db].url

    yield url
    for cluster in clusters.values():
        cluster.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | RedisClusterServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server(relay_tmp: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(relay_tmp / "postgres").start()
    yield server
    server.stop()


@pytest.fixture
def fresh_database_url(postgres_server: PostgresServer) -> str:
    """A new, empty database for one test."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(scope="module")
def stack_factory() -> Iterator[StackFactory]:
    made: list[Stack] = []

    def make(overrides: Mapping[str, Mapping[str, str]] | None = None, **config: Any) -> Stack:
        made.append(start_test_stack(overrides, **config))
        return made[-1]

    yield make
    for running in reversed(made):
        discard(running)
