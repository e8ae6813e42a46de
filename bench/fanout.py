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

`--redis cluster` runs them on a local Redis Cluster (3 primaries, 3
replicas, relay_devstack.rediscluster) instead of one server; the results are
named `<scenario>+cluster@...`, and the connection target allows the
cluster's readers (one per partition: a blocking read cannot span slots) and
a pool per primary.

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

The script and its siblings in bench/ (none defines `main()`, so
`relay_devstack.bench` runs only this one):

- `fanout_roles.py`: the child-process roles (`publish`, `drive` and its SSE
  client, `engine-subscribe`) and the `wake` measurement;
- `fanout_stack.py`: the stack's start-up, the runs, the `Sampler`, and
  spawning this script in a role;
- `fanout_report.py`: `TARGETS`, `WAKE_TARGETS`, `Phase`, `summarize`, the
  table;
- `benchstats.py`: percentiles (shared with interactive.py);
- here: a phase, the load on connected subscribers, the scenarios, `main()`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from array import array
from pathlib import Path
from typing import Any

from relay_devstack.bench import report
from relay_devstack.rediscluster import RedisClusterServer
from relay_devstack.servers import RedisServer

# The siblings above are imported by name from this folder. Run as `python
# bench/fanout.py` it is on sys.path already; loaded by file path (importlib,
# as libs/relay-devstack/tests/test_bench_scripts.py does) it is not.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# TARGETS and WAKE_TARGETS live in fanout_report; re-exported: this script's targets
from fanout_report import TARGETS as TARGETS
from fanout_report import WAKE_TARGETS as WAKE_TARGETS
from fanout_report import Phase, print_table, summarize
from fanout_roles import (
    EVENTS_CLIENT_NAME,
    drive,
    engine_subscribe,
    publish,
    read_latencies,
    wake_latency,
)
from fanout_stack import (
    BenchStack,
    Sampler,
    _spawn,
    _wait_files,
    create_runs,
    start_http_stack,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"


# ------------------------------------------------------------------ scenarios


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


async def orchestrate(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    os.chmod(work, 0o755)  # noqa: S103 - Postgres runs as nobody when root
    args.workdir = str(work)
    wanted = ["engine", "http", "wake"] if args.scenario == "all" else [args.scenario]
    results: list[dict[str, Any]] = []
    for name in wanted:
        server = (
            RedisClusterServer(work / name / "redis-cluster")
            if args.redis == "cluster"
            else RedisServer(work / name / "redis")
        )
        stack = BenchStack(workdir=work / name, redis=server.start())
        args.workdir = str(work / name)
        try:
            if name == "http":
                got = await scenario_http(args, stack)
            elif name == "engine":
                got = await scenario_engine(args, stack)
            else:
                followed = [f"run_idle_{i}" for i in range(args.runs)]
                got = [await wake_latency(stack.redis.url, followed)]
                if args.redis == "cluster":
                    got[0]["scenario"] = "wake+cluster"
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
    parser.add_argument(
        "--redis",
        default="single",
        choices=["single", "cluster"],
        help="one Redis server, or a local 3-primary + 3-replica Redis Cluster (scenario+cluster)",
    )
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
