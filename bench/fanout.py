"""Fan-out benchmark: many SSE subscribers on one events process, real Redis.

    .venv/bin/python bench/fanout.py [--scenario all|http|engine|wake]
        [--subscribers 10000] [--runs 2000] [--rates 1000,2000,3000,4200] [--duration 20]
        [--no-write]

About 5 minutes on this machine with the defaults.

Scenarios; each rate is a phase on the same connected subscribers (lightest
first, so a saturated phase's backlog cannot spill into a lighter one) and gives
one object in bench/results.json (merged by name, `<scenario>@<planned
aggregate>/s`):

- `http`: the whole path. Embedded Redis and Postgres, `relay-state`
  (migrated), one `relay-events` process; `--subscribers` real HTTP/1.1 SSE
  connections (authenticated, owner-checked, chunked, parsed) spread over
  `--runs` runs, from `--drivers` client processes; a publisher process XADDs
  each rate (events/s, round robin over the runs) for `--duration` seconds;
  after the last phase, a `done` to every run ends every stream.
- `engine`: the same load on `relay_core.fanout.EventHub` alone, subscribers
  in-process: what the engine costs without HTTP.
- `wake`: how long a brand-new run's first event takes to reach its first
  subscriber while `--runs` other runs are followed (the reader's wake-up).

Each event's data carries its publish time (`t`, wall clock just before the
XADD); latency = receipt time - `t`, for every event delivered. "Aggregate"
= events received by all subscribers per second: each XADD reaches
subscribers/runs clients (5 by default), so 4200 XADD/s is 21,000 events/s.
Redis connections of the events process are counted with CLIENT LIST (by
client name) during each phase; RSS and CPU come from /proc; the machine's
1-minute load average is recorded because this 2-core machine is shared.
Everything stays on 127.0.0.1 and is bounded in time.

The SSE clients are a lean asyncio protocol (not httpx): a Python HTTP client
stack costs about as much CPU per event as the server, and on this 2-core
machine the clients would otherwise measure themselves.

Results, the same way as every bench script (`relay_devstack.bench.report`):
each scenario's JSON line as it ends, a table of all its figures, then the
summary table (each target and whether it was met); the scenario objects are
merged by name into bench/results.json (unless `--no-write`), or handed to
`make bench BENCH=fanout`, which merges them. Targets: `TARGETS` (every
`http`/`engine` phase; the lighter load steps below 20,000 events/s are judged
on everything but the rate) and `WAKE_TARGETS`.
"""

# ruff: noqa: ASYNC110, ASYNC240, S105
# (a benchmark script: its few blocking file reads and poll loops are not on a
# measured path, and its internal token is a throwaway for its own processes)

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from redis.asyncio import Redis

from relay_core import keys
from relay_core.fanout import EventHub
from relay_core.gctune import tune_gc
from relay_core.state_api import CreateKeyIn, CreateRunIn
from relay_core.state_client import StateClient
from relay_devstack.bench import judge, report
from relay_devstack.procs import Child, free_port, wait_until
from relay_devstack.servers import PostgresServer, RedisServer

# benchstats.py is a sibling: run as `python bench/fanout.py` this folder is on
# sys.path already; loaded by file path (importlib, as
# libs/relay-devstack/tests/test_bench_scripts.py does) it is not.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchstats import percentile

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
BIN = Path(sys.executable).parent
TOKEN = "bench-internal-token"
EVENTS_CLIENT_NAME = "relay-events"
TARGETS = {  # figure: target (relay_devstack.bench.judge)
    "subscribers": ">= 10000",
    "redis_connections": "1..16",  # 0: the sampler saw none, which is no pass
    "latency_p99_ms": "< 100",
    "aggregate_events_per_s": ">= 20000",
    "delivered_ratio": ">= 1",  # every event to every subscriber
}
WAKE_TARGETS = {"first_event_p99_ms": "< 50"}
T_FIELD = re.compile(rb'"t":([0-9.]+)')


# ---------------------------------------------------------------- measurements


def read_latencies(path: Path) -> array[float]:
    data = array("d")
    data.frombytes(path.read_bytes())
    return data


async def redis_clients(redis_url: str, name_prefix: str) -> int:
    rc = Redis.from_url(redis_url, decode_responses=True)
    try:
        return sum(1 for c in await rc.client_list() if c.get("name", "").startswith(name_prefix))
    finally:
        await rc.aclose()


@dataclass
class Sampler:
    """Peak Redis connections and RSS, and CPU, of one process while load runs."""

    redis_url: str
    name_prefix: str
    pid: int
    client_pids: list[int]  # the SSE client processes (http), to show what they cost
    peak_conns: int = 0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    clients_cpu_s: float = 0.0
    machine_cpu_percent: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        proc = psutil.Process(self.pid)
        clients = [psutil.Process(p) for p in self.client_pids]
        cpu0 = sum(proc.cpu_times()[:2])
        clients0 = sum(sum(c.cpu_times()[:2]) for c in clients)
        psutil.cpu_percent()  # starts the machine-wide measurement
        while not stop.is_set():
            self.peak_conns = max(
                self.peak_conns, await redis_clients(self.redis_url, self.name_prefix)
            )
            self.peak_rss_mb = max(self.peak_rss_mb, proc.memory_info().rss / 2**20)
            self.cpu_s = sum(proc.cpu_times()[:2]) - cpu0
            self.clients_cpu_s = sum(sum(c.cpu_times()[:2]) for c in clients) - clients0
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
        self.machine_cpu_percent = psutil.cpu_percent() * (psutil.cpu_count() or 1)


# ------------------------------------------------------------------- publisher


async def publish(
    redis_url: str, run_ids: list[str], rate: float, duration_s: float, *, done: bool
) -> dict[str, float]:
    """XADD `rate` token events/s round robin over the runs (then `done` to each)."""
    rc = Redis.from_url(redis_url, decode_responses=True)
    sent = 0
    started, t0 = time.monotonic(), time.time()
    while (elapsed := time.monotonic() - started) < duration_s:
        due = int(elapsed * rate) - sent
        if due > 0:
            async with rc.pipeline(transaction=False) as pipe:
                t = time.time()
                data = json.dumps({"text": "x", "step": 0, "t": t}, separators=(",", ":"))
                for n in range(sent, sent + due):
                    key = keys.events(run_ids[n % len(run_ids)])
                    pipe.xadd(
                        key, {"event": "token", "data": data}, maxlen=10_000, approximate=True
                    )
                await pipe.execute()
            sent += due
        await asyncio.sleep(0.005)
    elapsed, t1 = time.monotonic() - started, time.time()
    if done:
        async with rc.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                data = '{"status":"succeeded","cost_usd":0}'
                pipe.xadd(keys.events(run_id), {"event": "done", "data": data})
            await pipe.execute()
    await rc.aclose()
    return {"published": sent, "elapsed_s": elapsed, "rate": sent / elapsed, "t0": t0, "t1": t1}


# ------------------------------------------------------------- the SSE client


class SseClient(asyncio.Protocol):
    """A minimal HTTP/1.1 SSE client: one GET, chunked body, SSE messages."""

    def __init__(self, request: bytes, stats: DriverStats) -> None:
        self.request = request
        self.stats = stats
        self.head = b""
        self.status = 0
        self.buf = b""
        self.sse = b""
        self.done = False
        self.retired = False  # a refused attempt, replaced by a retry
        self.connected: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head[9:12])
            data = self.head[end + 4 :]
            if not self.connected.done():
                self.connected.set_result(self.status)
        self.buf += data
        self._chunks()

    def _chunks(self) -> None:
        pos = 0
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol], 16)
            if size == 0:
                break
            if len(buf) < eol + 2 + size + 2:
                break
            self.sse += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2
        self.buf = buf[pos:]
        if self.sse:
            self._messages()

    def _messages(self) -> None:
        *messages, self.sse = self.sse.split(b"\r\n\r\n")
        now = time.time()
        for msg in messages:
            if msg.startswith(b":"):
                continue  # keep-alive comment
            m = T_FIELD.search(msg)
            if m is not None:
                t = float(m.group(1))
                self.stats.samples.extend((t, now - t))
            elif b"event: done" in msg:
                self.done = True
                self.stats.done += 1
            self.stats.received += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_result(self.status or -1)
        if self.retired:
            return
        self.stats.closed += 1
        if not self.done:
            self.stats.cut += 1


@dataclass
class DriverStats:
    samples: array[float]  # (publish time, latency) pairs
    received: int = 0
    done: int = 0
    closed: int = 0
    cut: int = 0


async def drive(args: argparse.Namespace) -> None:
    """One client process: open `--conns` streams, report ready, run until all end."""
    run_ids = json.loads(Path(args.runs_file).read_text())
    stats = DriverStats(samples=array("d"))
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(100)
    failures: dict[int, int] = {}
    retries: dict[int, int] = {}

    async def open_one(n: int) -> None:
        run_id = run_ids[(args.offset + n) % len(run_ids)]
        request = (
            f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {args.key}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        for attempt in range(5):  # like EventSource: a refused stream is retried
            async with sem:
                transport, proto = await loop.create_connection(
                    lambda: SseClient(request, stats), "127.0.0.1", args.port
                )
                status = await asyncio.wait_for(proto.connected, 60)
            if status == 200:
                return
            proto.retired = True
            transport.close()
            retries[status] = retries.get(status, 0) + 1
            await asyncio.sleep(0.5 * (attempt + 1))
        failures[status] = failures.get(status, 0) + 1

    await asyncio.gather(*(open_one(n) for n in range(args.conns)), return_exceptions=False)
    out = Path(args.out)
    ready = {"failures": failures, "retries": retries}
    (out.parent / (out.name + ".ready")).write_text(json.dumps(ready))
    deadline = time.monotonic() + args.max_s
    while stats.closed < args.conns and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    out.with_suffix(".lat").write_bytes(stats.samples.tobytes())
    out.write_text(
        json.dumps(
            {
                "received": stats.received,
                "done": stats.done,
                "closed": stats.closed,
                "cut": stats.cut,
                "failures": failures,
            }
        )
    )


# ------------------------------------------------------------ engine, in-process


@dataclass
class _Run:
    status: str = "running"
    conversation_id: str = "conv_bench"
    cost_usd: float = 0.0


async def engine_subscribe(args: argparse.Namespace) -> None:
    """Subscribers on an EventHub in this process (no HTTP), same output as `drive`."""
    run_ids = json.loads(Path(args.runs_file).read_text())
    tune_gc()  # as relay-events does
    hub = EventHub(args.redis_url, client_name=EVENTS_CLIENT_NAME)
    await hub.start()
    stats = DriverStats(samples=array("d"))

    async def consume(n: int) -> None:
        sub = await hub.subscribe(run_ids[n % len(run_ids)], run=_Run())
        ready.append(1)
        samples = stats.samples
        try:
            while True:
                batch = await sub.next_batch()
                now = time.time()
                for event in batch:
                    stats.received += 1
                    if event.type == "done":
                        stats.done += 1
                    else:
                        t = event.data["t"]
                        samples.extend((t, now - t))
        except StopAsyncIteration:
            pass
        except Exception:
            stats.cut += 1
        finally:
            sub.close()
            stats.closed += 1

    ready: list[int] = []
    tasks = [asyncio.create_task(consume(n)) for n in range(args.conns)]
    while len(ready) < args.conns:
        await asyncio.sleep(0.05)
    out = Path(args.out)
    (out.parent / (out.name + ".ready")).write_text(json.dumps({"failures": {}}))
    await asyncio.wait(tasks, timeout=args.max_s)
    await hub.stop()
    out.with_suffix(".lat").write_bytes(stats.samples.tobytes())
    out.write_text(
        json.dumps(
            {
                "received": stats.received,
                "done": stats.done,
                "closed": stats.closed,
                "cut": stats.cut,
                "failures": {},
            }
        )
    )


async def wake_latency(redis_url: str, followed: list[str], samples: int = 200) -> dict[str, Any]:
    """First-event latency of new runs while `followed` runs keep the reader busy."""
    hub = EventHub(redis_url, client_name="relay-bench-wake")
    await hub.start()
    rc = Redis.from_url(redis_url, decode_responses=True)
    try:
        subs = [await hub.subscribe(run_id, run=_Run()) for run_id in followed]
        await asyncio.sleep(0.2)
        lat: list[float] = []
        for _ in range(samples):
            run_id = f"run_wake_{uuid.uuid4().hex}"
            sub = await hub.subscribe(run_id, run=_Run())
            t = time.time()
            await rc.xadd(
                keys.events(run_id),
                {"event": "status", "data": json.dumps({"message": "hi", "t": t})},
            )
            event = await asyncio.wait_for(sub.__anext__(), 10)
            lat.append(time.time() - event.data["t"])
            sub.close()
            await rc.delete(keys.events(run_id))
        for s in subs:
            s.close()
    finally:
        await hub.stop()
        await rc.aclose()
    result = {
        "scenario": "wake",
        "followed_runs": len(followed),
        "samples": samples,
        "first_event_p50_ms": round(percentile(lat, 0.5) * 1000, 2),
        "first_event_p99_ms": round(percentile(lat, 0.99) * 1000, 2),
    }
    return judge(result, WAKE_TARGETS)


# ------------------------------------------------------------------ the stack


@dataclass
class BenchStack:
    workdir: Path
    redis: RedisServer
    postgres: PostgresServer | None = None
    state: Child | None = None
    events: Child | None = None
    events_port: int = 0
    key: str = ""

    def stop(self) -> None:
        for child in (self.events, self.state):
            if child is not None:
                child.stop()
        if self.postgres is not None:
            self.postgres.stop()
        self.redis.stop()


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(RELAY_DEV_MODE="true", RELAY_INTERNAL_TOKEN=TOKEN, RELAY_LOG_LEVEL="WARNING")
    env.update(values)
    return env


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def start_http_stack(stack: BenchStack) -> str:
    """Postgres, migrated; relay-state; relay-events. Returns state's URL."""
    stack.postgres = PostgresServer(stack.workdir / "postgres").start()
    db = stack.postgres.url
    out = subprocess.run(
        [str(BIN / "relay-state"), "migrate", "--database-url", db],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    if out.returncode != 0:
        raise RuntimeError(f"migrate failed: {out.stderr}")
    state_port, stack.events_port = free_port(), free_port()
    state_url = f"http://127.0.0.1:{state_port}"
    stack.state = Child(
        "state",
        [str(BIN / "relay-state")],
        log_path=stack.workdir / "state.log",
        env=_env(
            RELAY_PORT=str(state_port), RELAY_DATABASE_URL=db, RELAY_REDIS_URL=stack.redis.url
        ),
    )
    stack.events = Child(
        "events",
        [str(BIN / "relay-events")],
        log_path=stack.workdir / "events.log",
        env=_env(
            RELAY_PORT=str(stack.events_port),
            RELAY_REDIS_URL=stack.redis.url,
            RELAY_STATE_URL=state_url,
            RELAY_AUTH_CACHE_TTL_S="60",
        ),
    )
    for url in (state_url, f"http://127.0.0.1:{stack.events_port}"):
        wait_until(lambda u=url: _healthy(u), timeout_s=30, what=url)
    return state_url


async def create_runs(state_url: str, n: int) -> tuple[str, list[str]]:
    """One user's key and `n` runs recorded by state (queued; nobody executes them)."""
    state = StateClient(state_url, TOKEN, timeout_s=10.0)
    try:
        user = f"bench_{uuid.uuid4().hex[:8]}"
        key = (await state.create_key(CreateKeyIn(user_id=user))).api_key
        sem = asyncio.Semaphore(20)

        async def one(i: int) -> str:
            async with sem:
                run, _ = await state.create_run(
                    CreateRunIn(user_id=user, message=f"bench {i}", model="sim-default")
                )
                return run.run_id

        return key, list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await state.aclose()


# ------------------------------------------------------------------ scenarios


def _spawn(workdir: Path, name: str, role_args: list[str]) -> Child:
    argv = [sys.executable, str(Path(__file__).resolve()), *role_args]
    return Child(name, argv, log_path=workdir / f"{name}.log", env=dict(os.environ))


def _wait_files(paths: list[Path], children: list[Child], timeout_s: float, what: str) -> None:
    def check() -> bool:
        for child in children:
            if not child.alive() and child.proc.returncode != 0:
                raise RuntimeError(f"{child.name} failed:\n{child.tail()}")
        return all(p.exists() for p in paths)

    wait_until(check, timeout_s=timeout_s, what=what, step_s=0.2)


@dataclass
class Phase:
    """One publish rate on the same connected subscribers."""

    rate: float
    pub: dict[str, float]
    sampler: Sampler
    load_1m: float


async def run_load(
    args: argparse.Namespace,
    *,
    scenario: str,
    redis_url: str,
    run_ids: list[str],
    subscriber_roles: list[list[str]],
    measured_pid: int | None,
) -> list[dict[str, Any]]:
    """Subscribers connect once; a publisher runs at each rate; one result per rate."""
    work = Path(args.workdir)
    outs = [work / f"{scenario}-sub{i}.json" for i in range(len(subscriber_roles))]
    children = [
        _spawn(work, f"{scenario}-sub{i}", [*role, "--out", str(out)])
        for i, (role, out) in enumerate(zip(subscriber_roles, outs, strict=True))
    ]
    started = time.monotonic()
    ready = [o.parent / (o.name + ".ready") for o in outs]
    await asyncio.to_thread(_wait_files, ready, children, 900, "subscribers to connect")
    connect_s = time.monotonic() - started
    failures: dict[str, int] = {}
    retries: dict[str, int] = {}
    for path in ready:
        report = json.loads(path.read_text())
        for into, key in ((failures, "failures"), (retries, "retries")):
            for status, n in report.get(key, {}).items():
                into[status] = into.get(status, 0) + n
    pid = measured_pid if measured_pid is not None else children[0].pid
    phases = []
    rates = sorted(args.rates)  # a saturated phase's backlog must not spill into a lighter one
    for i, rate in enumerate(rates):
        last = i == len(rates) - 1
        client_pids = [c.pid for c in children] if measured_pid is not None else []
        phases.append(
            await run_phase(args, scenario, redis_url, (pid, client_pids), rate, last=last)
        )
        await asyncio.sleep(3.0)
    await asyncio.to_thread(_wait_files, outs, children, 180, "subscribers to finish")
    for child in children:
        child.stop()
    samples = array("d")
    totals = {"done": 0, "cut": 0}
    for o in outs:
        samples.extend(read_latencies(o.with_suffix(".lat")))
        for k in totals:
            totals[k] += json.loads(o.read_text())[k]
    common = {
        "connect_s": round(connect_s, 1),
        "connect_failures": failures,
        "connect_retries": retries,
        **totals,
    }
    return [summarize(args, scenario, run_ids, samples, ph, common) for ph in phases]


async def run_phase(
    args: argparse.Namespace,
    scenario: str,
    redis_url: str,
    pids: tuple[int, list[int]],
    rate: float,
    *,
    last: bool,
) -> Phase:
    work = Path(args.workdir)
    sampler = Sampler(redis_url, EVENTS_CLIENT_NAME, pids[0], pids[1])
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    out = work / f"{scenario}-publisher-{rate:g}.json"
    role = ["publish", "--redis-url", redis_url, "--runs-file", str(work / "runs.json"),
            "--rate", str(rate), "--duration", str(args.duration), "--out", str(out)]  # fmt: skip
    publisher = _spawn(
        work, f"{scenario}-publisher-{rate:g}", [*role, *(["--done"] if last else [])]
    )
    load = os.getloadavg()[0]
    await asyncio.to_thread(_wait_files, [out], [publisher], args.duration + 120, "publisher")
    await asyncio.sleep(1.0)  # the tail of the phase reaches its subscribers
    stop.set()
    await sampling
    publisher.stop()
    return Phase(rate, json.loads(out.read_text()), sampler, max(load, os.getloadavg()[0]))


def summarize(
    args: argparse.Namespace,
    scenario: str,
    run_ids: list[str],
    samples: array[float],
    phase: Phase,
    common: dict[str, Any],
) -> dict[str, Any]:
    pub, sampler = phase.pub, phase.sampler
    lat = [
        samples[i + 1] for i in range(0, len(samples), 2) if pub["t0"] <= samples[i] <= pub["t1"]
    ]
    connected = args.subscribers - sum(common["connect_failures"].values())
    expected = pub["published"] * args.subscribers / len(run_ids)
    rate = len(lat) / pub["elapsed_s"]
    p99_ms = percentile(lat, 0.99) * 1000
    result = {
        "scenario": f"{scenario}@{round(phase.rate * args.subscribers / len(run_ids))}/s",
        "subscribers": connected,
        "runs": len(run_ids),
        "connect_s": common["connect_s"],
        "duration_s": round(pub["elapsed_s"], 1),
        "published_per_s": round(pub["rate"]),
        "aggregate_events_per_s": round(rate),
        "delivered_ratio": round(len(lat) / expected, 4) if expected else 0.0,
        "latency_p50_ms": round(percentile(lat, 0.5) * 1000, 1),
        "latency_p99_ms": round(p99_ms, 1),
        "latency_max_ms": round(max(lat, default=float("nan")) * 1000, 1),
        "redis_connections": sampler.peak_conns,
        "rss_mb": round(sampler.peak_rss_mb),
        "cpu_percent": round(100 * sampler.cpu_s / max(pub["elapsed_s"] + 1.0, 1e-9)),
        "machine_load_1m": round(phase.load_1m, 1),
        "machine_cpu_percent": round(sampler.machine_cpu_percent),
        "clients_cpu_percent": round(100 * sampler.clients_cpu_s / (pub["elapsed_s"] + 1.0)),
        "streams_ended_with_done": common["done"],
        "streams_cut": common["cut"],
        "connect_failures": common["connect_failures"],
        "connect_retries": common["connect_retries"],
    }
    if phase.rate * args.subscribers / len(run_ids) < 20_000:  # a lighter load step:
        targets = {k: v for k, v in TARGETS.items() if k != "aggregate_events_per_s"}
    else:
        targets = TARGETS
    return judge(result, targets)


def _max_s(args: argparse.Namespace) -> float:
    """How long a subscriber process may live: every phase, with margin."""
    return len(args.rates) * (args.duration + 30) + 300


async def scenario_http(args: argparse.Namespace, stack: BenchStack) -> list[dict[str, Any]]:
    state_url = start_http_stack(stack)
    key, run_ids = await create_runs(state_url, args.runs)
    (Path(args.workdir) / "runs.json").write_text(json.dumps(run_ids))
    per = args.subscribers // args.drivers
    roles = [
        [
            "drive",
            "--port",
            str(stack.events_port),
            "--key",
            key,
            "--conns",
            str(per),
            "--offset",
            str(i * per),
            "--runs-file",
            str(Path(args.workdir) / "runs.json"),
            "--max-s",
            str(_max_s(args)),
        ]
        for i in range(args.drivers)
    ]
    assert stack.events is not None
    return await run_load(
        args,
        scenario="http",
        redis_url=stack.redis.url,
        run_ids=run_ids,
        subscriber_roles=roles,
        measured_pid=stack.events.pid,
    )


async def scenario_engine(args: argparse.Namespace, stack: BenchStack) -> list[dict[str, Any]]:
    run_ids = [f"run_bench_{uuid.uuid4().hex}" for _ in range(args.runs)]
    (Path(args.workdir) / "runs.json").write_text(json.dumps(run_ids))
    role = [
        "engine-subscribe",
        "--redis-url",
        stack.redis.url,
        "--conns",
        str(args.subscribers),
        "--runs-file",
        str(Path(args.workdir) / "runs.json"),
        "--max-s",
        str(_max_s(args)),
    ]
    return await run_load(
        args,
        scenario="engine",
        redis_url=stack.redis.url,
        run_ids=run_ids,
        subscriber_roles=[role],
        measured_pid=None,
    )


# ----------------------------------------------------------------- reporting


def print_table(results: list[dict[str, Any]]) -> None:
    cols = [
        "scenario",
        "subscribers",
        "runs",
        "published_per_s",
        "aggregate_events_per_s",
        "delivered_ratio",
        "latency_p50_ms",
        "latency_p99_ms",
        "redis_connections",
        "rss_mb",
        "cpu_percent",
        "streams_cut",
        "first_event_p50_ms",
        "first_event_p99_ms",
        "met",
    ]
    cols = [c for c in cols if any(c in r for r in results)]
    rows = [[str(r.get(c, "")) for c in cols] for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    print(f"targets: {json.dumps(TARGETS)}; wake: {json.dumps(WAKE_TARGETS)}")


async def orchestrate(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    os.chmod(work, 0o755)  # noqa: S103 - Postgres runs as nobody when root
    args.workdir = str(work)
    wanted = ["engine", "http", "wake"] if args.scenario == "all" else [args.scenario]
    results: list[dict[str, Any]] = []
    for name in wanted:
        stack = BenchStack(workdir=work / name, redis=RedisServer(work / name / "redis").start())
        args.workdir = str(work / name)
        try:
            if name == "http":
                got = await scenario_http(args, stack)
            elif name == "engine":
                got = await scenario_engine(args, stack)
            else:
                followed = [f"run_idle_{i}" for i in range(args.runs)]
                got = [await wake_latency(stack.redis.url, followed)]
        finally:
            stack.stop()
        for result in got:
            print(json.dumps(result), flush=True)
        results += got
    print_table(results)
    print(f"work files in {work}")
    report(results, script="fanout", results_file=RESULTS, write=not args.no_write)


# ----------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "role",
        nargs="?",
        default="bench",
        choices=["bench", "publish", "drive", "engine-subscribe"],
    )
    parser.add_argument("--scenario", default="all", choices=["all", "http", "engine", "wake"])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument(
        "--rates",
        default="1000,2000,3000,4200",
        help="XADDs per second, one phase each on the same subscribers (comma-separated)",
    )
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--done", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--drivers", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="leave bench/results.json alone")
    # internal roles
    parser.add_argument("--redis-url")
    parser.add_argument("--runs-file")
    parser.add_argument("--out")
    parser.add_argument("--port", type=int)
    parser.add_argument("--key")
    parser.add_argument("--conns", type=int)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--max-s", type=float, default=300.0)
    args = parser.parse_args()
    if args.role == "publish":
        run_ids = json.loads(Path(args.runs_file).read_text())
        result = _run(publish(args.redis_url, run_ids, args.rate, args.duration, done=args.done))
        Path(args.out).write_text(json.dumps(result))
    elif args.role == "drive":
        _run(drive(args))
    elif args.role == "engine-subscribe":
        _run(engine_subscribe(args))  # the same event loop relay-events runs on
    else:
        args.rates = [float(r) for r in args.rates.split(",")]
        asyncio.run(orchestrate(args))


def _run(main: Any) -> Any:
    """uvloop when installed (relay-events depends on it): lighter load generators."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":
    main()
