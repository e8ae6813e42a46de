"""pytest fixtures: real Redis and Postgres servers started for the test
session, and Relay's own processes started the one way (relay_devstack.Stack).

Registered by the repository's root `conftest.py`. Servers listen on free
ports under a temporary folder and stop when the session ends (and, through
PR_SET_PDEATHSIG, even if pytest is killed). Both require a password, as
`make dev`'s do: `redis_url`, `postgres_server.url` and the URLs of
`create_database` carry it.

- `stack_factory` (module): `stack_factory(overrides, **config)` starts a
  Stack (all of it, or `services=(...)` beside `redis_url`/`database_url`/
  `state_url` the test has) and discards every one it made when the module
  ends. Session-wide stacks use `harness.running_stack` in a fixture.

The `redis` marker (registered in pyproject.toml) goes on every test that
uses, directly or through other fixtures, a fixture named in the
`redis_fixtures` ini option: those that start a Redis server (`redis_server`
here, and the conftests' own). `make test-redis7` runs `pytest -m redis` on a
Redis 7.2-compatible server. The fixture closure is what decides, so a new test
on `redis_url` needs nothing; a test that starts a server in its body carries
the marker itself. Stacks start a Redis of their own but are not in the list:
the end-to-end and chaos suites would triple that pass; the few chaos modules
about Redis carry the marker.
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

from relay_devstack.devsecrets import POSTGRES_PASSWORD_FILE, REDIS_PASSWORD_FILE, secret
from relay_devstack.harness import discard, start_test_stack
from relay_devstack.rediscluster import RedisClusterServer, start_test_redis
from relay_devstack.servers import PostgresServer, RedisServer
from relay_devstack.stack import Stack

StackFactory = Callable[..., Stack]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "redis_fixtures",
        "fixtures that start a Redis server: a test using one is marked `redis`",
        type="linelist",
        default=["redis_server"],
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    redis_fixtures = set(config.getini("redis_fixtures"))
    for item in items:
        if redis_fixtures.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def relay_tmp() -> Iterator[Path]:
    # Under the system temp folder with o+x so Postgres can run as `nobody` when root.
    path = Path(tempfile.mkdtemp(prefix="relay-test-"))
    os.chmod(path, 0o755)  # noqa: S103 - nobody must traverse it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(relay_tmp: Path) -> Iterator[RedisServer | RedisClusterServer]:
    """The session's Redis: one server, or a local cluster under `make test-redis-cluster`,
    with a password, as `make dev`'s: a test reaches it through `redis_url`."""
    password = secret(relay_tmp / REDIS_PASSWORD_FILE)
    server = start_test_redis(relay_tmp / "redis", password=password)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_db_url(
    redis_server: RedisServer | RedisClusterServer, relay_tmp: Path
) -> Iterator[Callable[[int], str]]:
    """`redis_db_url(n)`: a Redis namespace of its own, for tests whose queues must
    not see other packages' runs: database `n` of the session's server, or (a
    cluster has only database 0) a cluster of its own per `n`, with the same
    password."""
    clusters: dict[int, RedisClusterServer] = {}

    def url(db: int) -> str:
        if not isinstance(redis_server, RedisClusterServer):
            return f"{redis_server.url.rpartition('/')[0]}/{db}"
        if db not in clusters:
            clusters[db] = RedisClusterServer(
                relay_tmp / f"redis-db{db}", password=redis_server.password
            ).start()
        return clusters[db].url

    yield url
    for cluster in clusters.values():
        cluster.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | RedisClusterServer) -> str:
    """The session Redis's URL, its password in it."""
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server(relay_tmp: Path) -> Iterator[PostgresServer]:
    """With password authentication, as `make dev`'s: its URLs carry the password."""
    password = secret(relay_tmp / POSTGRES_PASSWORD_FILE)
    server = PostgresServer(relay_tmp / "postgres", password=password).start()
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
