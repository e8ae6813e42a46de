"""Finding 6: the dev stack's data was open to every local user.

Redis had no password, Postgres trusted local connections, and the Redis
append-only file (every tenant's events), the service logs and the key files
were world-readable. `relay-dev up` (what `make dev` runs) now makes its data
folder 0700 and every file it writes 0600, gives the embedded Redis a
password and Postgres password authentication, the passwords generated once
and kept in the data folder (relay_devstack.devsecrets).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from relay_devstack.harness import stack_data_dir, wait_for
from relay_devstack.ports import DEV_PORTS
from relay_devstack.procs import free_cluster_port, free_port
from relay_devstack.rediscluster import CLUSTER_ENV, cluster_wanted
from relay_devstack.servers import relocated_data_dir
from relay_devstack.stackconfig import CLUSTER_NODES
from tests.security.attacks import sim

RELAY_DEV = str(Path(sys.executable).parent / "relay-dev")
# Under `make test-redis-cluster` the dev stack runs on its local Redis Cluster,
# whose every node must keep the stack private too (the same password).
CLUSTER = cluster_wanted(os.environ.get(CLUSTER_ENV))


def _cluster_base_port() -> int:
    """A port from which CLUSTER_NODES consecutive ports (and their cluster bus
    ports) are free: what `make dev REDIS=cluster` uses."""
    for _ in range(200):
        base = free_cluster_port()
        if all(_free(base + i) and _free(base + i + 10000) for i in range(1, CLUSTER_NODES)):
            return base
    raise RuntimeError("no run of free ports for the dev cluster")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def dev() -> Iterator[tuple[Path, dict[str, str]]]:
    """`relay-dev up` on a fresh data folder and free ports, until the module ends."""
    data_dir = stack_data_dir("relay-dev-private-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["RELAY_DEV_DATA_DIR"] = str(data_dir)
    for var, _ in DEV_PORTS.values():
        env[var] = str(free_port())
    if CLUSTER:  # `make dev REDIS=cluster`: six nodes from RELAY_REDIS_PORT on
        env["RELAY_DEV_REDIS"] = "cluster"
        env["RELAY_REDIS_PORT"] = str(_cluster_base_port())
    proc = subprocess.Popen(
        [RELAY_DEV, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(line.rstrip("\n") for line in proc.stdout)

    threading.Thread(target=read, daemon=True).start()
    try:

        def ready() -> bool:
            assert proc.poll() is None, "\n".join(lines)
            return any(line.startswith("Ready in") for line in lines)

        wait_for(ready, timeout_s=120, what="relay-dev up")
        yield data_dir, env
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        subprocess.run([RELAY_DEV, "clean-data"], env=env, capture_output=True, check=False)
        shutil.rmtree(data_dir, ignore_errors=True)


def _submit_a_run(data_dir: Path, env: dict[str, str]) -> None:
    """So the append-only file holds a tenant's events."""
    key = (data_dir / "dev-api-key").read_text().strip()
    gateway = f"http://127.0.0.1:{env['RELAY_GATEWAY_PORT']}"
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {key}"}) as client:
        run = client.post("/v1/runs", json={"message": sim("private", tokens=3)}).json()

        def done() -> bool:
            return bool(client.get(f"/v1/runs/{run['run_id']}").json()["status"] == "succeeded")

        wait_for(done, timeout_s=30, what="the run to finish")


def test_no_file_the_dev_stack_writes_is_readable_by_others(
    dev: tuple[Path, dict[str, str]],
) -> None:
    data_dir, env = dev
    _submit_a_run(data_dir, env)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    folders = [data_dir, relocated_data_dir(data_dir / "postgres")]
    files = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    # what the finding named: the AOF, the logs, the keys (and the new secrets)
    assert {"gateway.log", "dev-api-key", "redis-password", "postgres-password"} <= names
    assert any("appendonly" in p.name for p in files), sorted(names)
    exposed = [
        f"{p} {oct(stat.S_IMODE(p.stat().st_mode))}" for p in files if p.stat().st_mode & 0o077
    ]
    assert not exposed, exposed


def test_the_dev_redis_refuses_unauthenticated_commands(dev: tuple[Path, dict[str, str]]) -> None:
    data_dir, env = dev
    first = int(env["RELAY_REDIS_PORT"])
    password = (data_dir / "redis-password").read_text().strip()
    for port in range(first, first + (CLUSTER_NODES if CLUSTER else 1)):  # every node
        with pytest.raises(redis.exceptions.RedisError, match=r"(?i)auth"):
            redis.Redis(port=port).ping()
        assert redis.Redis(port=port, password=password).ping()


def test_the_dev_postgres_wants_a_password(dev: tuple[Path, dict[str, str]]) -> None:
    data_dir, env = dev
    dsn = f"postgresql://postgres@127.0.0.1:{env['RELAY_POSTGRES_PORT']}/relay"

    async def connect(password: str | None) -> None:
        conn = await asyncpg.connect(dsn, password=password, timeout=10)
        await conn.close()

    with pytest.raises(Exception, match=r"(?i)password"):
        asyncio.run(connect(None))
    asyncio.run(connect((data_dir / "postgres-password").read_text().strip()))
