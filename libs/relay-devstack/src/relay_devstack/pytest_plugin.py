"""pytest fixtures: real Redis and Postgres servers started for the test session.

Registered by the repository's root `conftest.py`. Servers listen on free
ports under a temporary folder and stop when the session ends (and, through
PR_SET_PDEATHSIG, even if pytest is killed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay_devstack.servers import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def relay_tmp() -> Iterator[Path]:
    # Under the system temp folder with o+x so Postgres can run as `nobody` when root.
    path = Path(tempfile.mkdtemp(prefix="relay-test-"))
    os.chmod(path, 0o755)  # noqa: S103 - nobody must traverse it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(relay_tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(relay_tmp / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
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
