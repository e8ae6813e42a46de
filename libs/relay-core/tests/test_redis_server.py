"""The tests run on the Redis server the harness was asked for.

`make test` runs the Redis-facing tests twice: on the default server (the
venv's 6.2, or a 7+ on PATH) and, as `make test-redis7`, the tests marked
`redis` (`pytest -m redis`) with `RELAY_TEST_REDIS_SERVER=valkey` on a Redis
7.2-compatible one (relay_devstack.servers). This makes sure the second pass
is not silently the first one again, and that the marker is on the tests of
the session's Redis (relay_devstack's pytest plugin puts it there), so that
pass selects them.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from redis.asyncio import Redis

from relay_devstack.servers import REDIS_SERVER_ENV


async def test_the_session_redis_is_the_one_asked_for(
    redis_url: str, request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("redis") is not None, "not in `make test-redis7`"
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        info: dict[str, Any] = await client.info("server")
    finally:
        await client.aclose()
    major = int(str(info["redis_version"]).split(".")[0])
    if os.environ.get(REDIS_SERVER_ENV, "").strip() == "valkey":
        assert "valkey_version" in info, info
        assert major >= 7  # Valkey reports the Redis version it is compatible with
    else:
        assert "valkey_version" not in info
        assert major >= 6


def test_every_fixture_named_in_redis_fixtures_exists(pytestconfig: pytest.Config) -> None:
    """A renamed fixture would silently drop its tests from `make test-redis7`."""
    root = pytestconfig.rootpath
    folders = [root / "tests", *root.glob("libs/*/src"), *root.glob("libs/*/tests")]
    folders += root.glob("services/*/tests")
    defined = {
        match.group(1)
        for folder in folders
        for path in folder.rglob("*.py")
        for match in re.finditer(r"^(?:async )?def (\w+)\(", path.read_text(), re.MULTILINE)
    }
    listed = pytestconfig.getini("redis_fixtures")
    assert listed and not set(listed) - defined, set(listed) - defined
