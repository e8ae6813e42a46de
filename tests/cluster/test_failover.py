"""kill -9 of a primary under load: every run still succeeds, exactly once, with whole streams.

The stack runs on a local 3-primary + 3-replica Redis Cluster (1 s node
timeout). 50 background runs each call the non-idempotent `ledger` tool
(every execution is appended to a file, tests/chaos/tools_plugin.py) and
then stream an answer; 20 chats (`POST /v1/chat/stream`, detached, rejoined
on their events URL) stream a long answer. Every run is followed by a client
that drops its connection every few events and resumes with Last-Event-ID.
Once every run is in flight (each client has seen events, none is done),
the primary holding the most keys of runs is SIGKILLed, and its replica is
promoted. Just before the kill its replica is held (SIGSTOP) and the
primary drops the replication link, so what the primary writes in its last
`LAG_S` is never replicated: it is lost with it, as a loaded cluster would
lose it.

What must hold, within `BOUND_S` of the kill:
- every run succeeds, and the `ledger` tool ran exactly once per run;
- what each client received is exactly the stored stream (no gap, no
  duplicate), though the promoted replica missed the last events written
  before the kill (the runner puts them back with their own ids,
  `relay_runner.eventlog`);
- keys of runs were on every primary before the kill.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from typing import Any

from relay_devstack.harness import async_wait_for
from relay_devstack.rediscluster import RedisClusterServer
from tests.chaos.client import (
    Client,
    Follower,
    Received,
    assert_same_stream,
    events_client,
    read_events,
    sim,
)
from tests.chaos.kit import ChaosStack, record_figures
from tests.cluster.clusterkit import run_keys_per_primary

RUNS, CHATS = 50, 20
BOUND_S = 60.0  # every run is over this long after the kill, at the latest
LAG_S = 0.5  # the replica misses the primary's writes of this long before the kill


def job(i: int) -> str:
    """Half the runs call `ledger` before a wait, half after it: at the kill,
    some have run it, some are in a tool, some will run it after the failover."""
    ledger = {"name": "ledger", "args": {"note": f"n{i}"}}
    wait = {"name": "wait", "args": {"seconds": 2}}
    tools = [ledger, wait] if i % 2 else [wait, ledger]
    return sim(f"job {i}", tools=tools, tokens=60, token_delay_ms=50)


def chat(i: int) -> str:
    return sim(f"chat {i}", tokens=160, token_delay_ms=40)


async def start_chat(client: Client, i: int, *, timeout_s: float = 60) -> dict[str, Any]:
    """A detached chat: read its headers, leave; its stream is rejoined on its events
    URL. A 503 (a dependency slow on this shared machine) is retried under the same
    Idempotency-Key, as a client would."""
    body = {"message": chat(i), "detach": True}
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    deadline = time.monotonic() + timeout_s
    while True:
        async with client.http.stream(
            "POST", "/v1/chat/stream", json=body, headers=headers
        ) as resp:
            if resp.status_code == 200:
                return {
                    "run_id": resp.headers["relay-run-id"],
                    "events_url": resp.headers["relay-events-url"],
                }
            text = await resp.aread()
        assert resp.status_code == 503 and time.monotonic() < deadline, text
        await asyncio.sleep(0.2)


def stream_diff(run_id: str, received: list[Received], replay: list[Received]) -> dict[str, Any]:
    """What a client received that the stored stream does not hold, and the other
    way round (empty when they are the same)."""
    got = {(e.id, e.event, str(e.data)) for e in received}
    kept = {(e.id, e.event, str(e.data)) for e in replay}
    if got == kept and len(received) == len(replay):
        return {}
    return {
        "run_id": run_id,
        "received_only": sorted(got - kept)[:5],
        "stored_only": sorted(kept - got)[:5],
        "received": len(received),
        "stored": len(replay),
    }


def restores(chaos: ChaosStack) -> int:
    """How many times a runner put back events the promoted replica had missed."""
    found = 0
    for name in ("runner-background", "runner-interactive"):
        text = chaos.stack.log_path(name).read_text(errors="replace")
        found += text.count("lost its last events")
    return found


def in_flight(follower: Follower) -> bool:
    return len(follower.received) >= 3 and not follower.done


async def test_kill9_of_the_busiest_primary_loses_nothing(cluster_stack: ChaosStack) -> None:
    stack = cluster_stack.stack
    cluster = stack.redis
    assert isinstance(cluster, RedisClusterServer)
    client = Client(stack.gateway_url, cluster_stack.new_key())
    events = events_client(client.key)
    try:
        runs = list(
            await asyncio.gather(
                *(client.submit_retrying(job(i), timeout_s=60) for i in range(RUNS))
            )
        )
        chats = list(await asyncio.gather(*(start_chat(client, i) for i in range(CHATS))))
        everything = runs + chats
        run_ids = {r["run_id"] for r in everything}
        followers = [Follower(events, r["events_url"], drop_every=9) for r in everything]
        following = [asyncio.create_task(f.follow(timeout_s=BOUND_S + 60)) for f in followers]
        await async_wait_for(
            lambda: all(in_flight(f) for f in followers), timeout_s=60, what="every run streaming"
        )
        keys_before = run_keys_per_primary(cluster)
        victim = max(keys_before, key=lambda port: keys_before[port])
        tools_before = len(cluster_stack.ledger(run_ids))
        [replica] = cluster.replicas_of(victim)
        cluster.signal_node(replica, signal.SIGSTOP)
        cluster.cut_replication(victim)
        await asyncio.sleep(LAG_S)
        killed_at = time.monotonic()
        cluster.kill_node(victim)
        cluster.signal_node(replica, signal.SIGCONT)
        failover_s = await asyncio.to_thread(cluster.wait_failover, victim)
        await asyncio.wait_for(asyncio.gather(*following), timeout=BOUND_S)
        recovered_s = time.monotonic() - killed_at

        records = await client.wait_terminal(run_ids, timeout_s=10)
        replays = [await read_events(events, r["events_url"]) for r in everything]
        ledger = cluster_stack.ledger(run_ids)
        attempts = Counter(r["attempts"] for r in records.values())
        record_figures(
            "kill -9 of a Redis Cluster primary",
            runs=RUNS,
            chats=CHATS,
            keys_per_primary=sorted(keys_before.values()),
            tools_done_at_kill=tools_before,
            failover_s=failover_s,
            recovered_s=recovered_s,
            attempts=dict(attempts),
            stream_connections=sum(f.connections for f in followers),
            events_put_back=restores(cluster_stack),
        )

        assert len(keys_before) == 3 and all(n > 0 for n in keys_before.values()), keys_before
        failed = [
            (r["run_id"], r.get("error")) for r in records.values() if r["status"] != "succeeded"
        ]
        assert not failed, failed
        per_run = Counter(row["run_id"] for row in ledger)
        assert per_run == dict.fromkeys({r["run_id"] for r in runs}, 1), per_run
        differing = [
            diff
            for r, follower, replay in zip(everything, followers, replays, strict=True)
            if (diff := stream_diff(r["run_id"], follower.received, replay))
        ]
        assert not differing, differing
        for follower, replay in zip(followers, replays, strict=True):
            assert_same_stream(follower.received, replay)
            kinds = [e.event for e in replay]
            assert kinds.count("done") == 1 and kinds[-1] == "done"
        assert recovered_s < BOUND_S
    finally:
        await events.aclose()
        await client.aclose()


async def test_the_stack_serves_again_after_the_failover(cluster_stack: ChaosStack) -> None:
    """After the failover (the killed node stays down): new runs and chats work."""
    client = Client(cluster_stack.stack.gateway_url, cluster_stack.new_key())
    events = events_client(client.key)
    try:
        run = await client.submit(sim("after", tokens=5))
        talk = await start_chat(client, 99)
        records = await client.wait_terminal([run["run_id"], talk["run_id"]], timeout_s=30)
        assert {r["status"] for r in records.values()} == {"succeeded"}
        for r in (run, talk):
            replay = await read_events(events, r["events_url"])
            assert replay[-1].event == "done"
    finally:
        await events.aclose()
        await client.aclose()
