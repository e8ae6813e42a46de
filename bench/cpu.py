"""CPU per run of every process, and the burst of chats: where a run's CPU goes.

    .venv/bin/python bench/cpu.py [--runs 200] [--rounds 3] [--runners 1]
        [--ttft-ms 50] [--tokens 20] [--token-delay-ms 50] [--no-profile]
        [--trace] [--redis single|cluster] [--no-write]

About two minutes on this machine with the defaults.

The whole stack runs as processes on free ports (the `relay_devstack`
harness, `interactive_stack.start_stack`: the interactive pool opened wide,
the gateway's per-key limits out of the way), warmed up first. THE STANDARD
WORKLOAD: `--runs` interactive runs started at the same instant (one
event-loop turn of the load client), each streaming `--tokens` tokens
`--token-delay-ms` apart after a `--ttft-ms` time to first token (modelsim's
`#sim` directive). Each round sends the same requests twice, with the same
lean client (leanhttp.py):

- `direct`: straight to modelsim (`POST /v1/messages`), THE FLOOR: what the
  load client and the model simulator cost and take by themselves;
- `relay`: through Relay (`POST /v1/chat/stream` on the gateway), each read
  to its `done`.

Measured for every relay burst, from `/proc/<pid>/stat` deltas (procstat.py:
each process tree's utime+stime, reaped children included), per process:
gateway, state, every runner, events (Relay's own); Postgres (postmaster and
backends), Redis, modelsim (the provider) and the load client (the users),
reported beside. The window runs from the burst's start until the stack is
idle again (every slot released), so trailing work (acks, slot releases)
counts; the processes' idle CPU over as long (measured apart, before the
rounds) is reported beside and not subtracted from the target figure.
Each round also reports where the first token's wait goes, as the runners
see it (their `relay_runner_queue_wait_seconds` and
`relay_runner_first_token_seconds`, means over the burst, from each run's
queue entry): the rest of the client's time to first token is the gateway's
accept, state's create and the token's way back.

Then, unless `--no-profile`, a separate round of `--profile-rounds` bursts
under py-spy (pyspy.py: `py-spy record --format speedscope` on each Relay
service, and modelsim) whose speedscope files are kept in
bench/artefacts/cpu/ and whose hot spots (top functions by self and
inclusive share, self share by package) go into the results. Profiled bursts
are not in the reported CPU or latency figures (py-spy pauses the process it
samples).

Two scenarios, judged by `relay_devstack.bench.judge` and merged by name
into bench/results.json (unless `--no-write`):

- `cpu@<runs>`: `relay_cpu_ms_per_run` (gateway + state + runners + events)
  <= 7; every process's figure in `cpu_ms_per_run`;
- `burst@<runs>`: `wall_ratio` (relay wall / direct wall, the mean of the
  rounds' ratios) <= 1.2, relay `ttft_p99_ms` <= 500, `failed` == 0.

`--redis cluster` runs the stack on a local Redis Cluster (3 primaries, 3
replicas, `relay_devstack.rediscluster`), every node's CPU summed as `redis`,
under the scenario names `cpu+cluster@...` and `burst+cluster@...`.

`--trace` runs every service with tracing on (100% sampled) to an OTLP
receiver in this process that discards what it gets, under the scenario
names `cpu-traced@...` and `burst-traced@...`: tracing's CPU overhead is
the ratio of the two cpu figures.

`bench/tracing.py` compares the two the way this machine allows (starts
alternated, several each): tracing's overhead as one judged figure.

The machine is shared and has 2 cores: the 1-minute load average at the
start and end of every round is recorded; wall-clock figures are only worth
comparing at a similar load, CPU per run much less so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relay_devstack.bench import judge, report, stop_stack
from relay_devstack.otlpsink import discarding_receiver
from relay_devstack.rediscluster import RedisClusterServer
from relay_devstack.stack import Stack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchstats import dist, percentile
from interactive_load import Sim, burst, raw_model_request, relay_request
from interactive_report import failures, ttfts
from interactive_stack import runner_names, start_stack, wait_idle
from leanhttp import Timing
from procstat import Meter
from pyspy import Profiler, hot_spots

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
ARTEFACTS = HERE / "artefacts" / "cpu"

RELAY = ("gateway", "state", "events")  # and every runner
BESIDE = ("postgres", "redis", "modelsim", "client")
CPU_TARGETS = {"relay_cpu_ms_per_run": "<= 7"}
BURST_TARGETS = {"wall_ratio": "<= 1.2", "ttft_p99_ms": "<= 500", "failed": "== 0"}


# ------------------------------------------------------------------ the stack


def process_roots(stack: Stack) -> dict[str, int]:
    """name -> pid of every measured process tree (this client included); a
    Redis Cluster's nodes as `redis.<n>` (summed into `redis` by `merged`)."""
    roots = {"client": os.getpid()}
    for name in [
        *RELAY,
        *runner_names(stack),
        "runner-background",
        "postgres",
        "redis",
        "modelsim",
    ]:
        child = stack.child(name)
        if child is not None:
            roots[name] = child.pid
    if isinstance(stack.redis, RedisClusterServer):
        del roots["redis"]  # the first node's: every node is counted below
        for n, node in enumerate(stack.redis.nodes):
            if node.child is not None:
                roots[f"redis.{n}"] = node.child.pid
    return roots


def merged(cpu_s: dict[str, float]) -> dict[str, float]:
    """CPU seconds by process, a cluster's nodes summed into `redis`."""
    out: dict[str, float] = {}
    for name, seconds in cpu_s.items():
        key = "redis" if name.startswith("redis.") else name
        out[key] = out.get(key, 0.0) + seconds
    return out


def is_relay(name: str) -> bool:
    return name in RELAY or name.startswith("runner")


WAITS = {"queue_wait": "relay_runner_queue_wait_seconds",
         "first_token": "relay_runner_first_token_seconds"}  # fmt: skip


def runner_waits(stack: Stack) -> dict[str, tuple[float, float]]:
    """(count, sum in s) of the interactive runners' wait histograms, summed."""
    totals = {key: (0.0, 0.0) for key in WAITS}
    for name in runner_names(stack):
        text = httpx.get(stack.url(name) + "/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            key = next((k for k, v in WAITS.items() if v == family.name), None)
            if key is None:
                continue
            count, total = totals[key]
            for sample in family.samples:
                if sample.labels.get("pool") != "interactive":
                    continue
                if sample.name.endswith("_count"):
                    count += sample.value
                elif sample.name.endswith("_sum"):
                    total += sample.value
            totals[key] = (count, total)
    return totals


def mean_ms(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    out = {}
    for key, (count, total) in after.items():
        n = count - before[key][0]
        out[key] = round((total - before[key][1]) * 1000 / n, 1) if n else float("nan")
    return out


# ------------------------------------------------------------------ a round


@dataclass
class Round:
    direct: list[Timing]
    relay: list[Timing]
    direct_wall_s: float
    relay_wall_s: float
    cpu_s: dict[str, float]
    window_s: float
    load_1m: tuple[float, float]
    # The runners' own view of the first-token wait, means over the burst (ms):
    # `queue_wait` (entry -> claim) and `first_token` (entry -> first token stored).
    runner_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Bench:
    args: argparse.Namespace
    stack: Stack
    sim: Sim
    turn: int = 0
    idle_cpu_per_s: dict[str, float] = field(default_factory=dict)

    def texts(self, n: int) -> list[str]:
        self.turn += n
        return [self.sim.message(self.turn - n + i) for i in range(n)]

    async def relay_burst(self, texts: list[str]) -> tuple[list[Timing], float]:
        key = self.stack.api_key
        started = time.perf_counter()
        timings = await burst([relay_request(self.stack, key, t) for t in texts])
        return timings, time.perf_counter() - started

    async def direct_burst(self, texts: list[str]) -> tuple[list[Timing], float]:
        started = time.perf_counter()
        timings = await burst([raw_model_request(self.stack, t) for t in texts])
        return timings, time.perf_counter() - started


async def measure_idle(bench: Bench, seconds: float = 5.0) -> None:
    """Each process's CPU per second with nothing to do (its polls and timers)."""
    await wait_idle(bench.stack)
    meter = Meter(process_roots(bench.stack), own=frozenset({"client"}))
    await asyncio.sleep(seconds)
    bench.idle_cpu_per_s = {k: v / seconds for k, v in merged(meter.used()).items()}


async def one_round(bench: Bench) -> Round:
    texts = bench.texts(bench.args.runs)
    await wait_idle(bench.stack)
    load0 = os.getloadavg()[0]
    direct, direct_wall = await bench.direct_burst(texts)
    await wait_idle(bench.stack)
    waits0 = await asyncio.to_thread(runner_waits, bench.stack)
    meter = Meter(process_roots(bench.stack), own=frozenset({"client"}))
    started = time.perf_counter()
    relay, relay_wall = await bench.relay_burst(texts)
    await wait_idle(bench.stack)
    window = time.perf_counter() - started
    cpu_s = merged(meter.used())
    waits = mean_ms(waits0, await asyncio.to_thread(runner_waits, bench.stack))
    return Round(direct, relay, direct_wall, relay_wall, cpu_s, window,
                 (load0, os.getloadavg()[0]), waits)  # fmt: skip


async def warm_up(bench: Bench) -> None:
    for text in bench.texts(5):
        if bad := failures((await bench.relay_burst([text]))[0]):
            raise RuntimeError(f"warm-up request failed: {bad}")
    texts = bench.texts(min(50, bench.args.runs))
    await bench.direct_burst(texts)
    if bad := failures((await bench.relay_burst(texts))[0]):
        raise RuntimeError(f"warm-up burst failed: {bad[:5]}")


async def profile(bench: Bench, suffix: str) -> dict[str, Any]:
    """`--profile-rounds` bursts under py-spy; the hot spots of each service."""
    stack = bench.stack
    names = [*RELAY, *runner_names(stack), "modelsim"]
    pids = {n: c.pid for n in names if (c := stack.child(n)) is not None}
    await wait_idle(stack)
    out_dir = ARTEFACTS / f"{bench.args.runs}{suffix}"
    profiler = Profiler(pids, out_dir)
    await asyncio.sleep(1.0)  # py-spy attaches
    for _ in range(bench.args.profile_rounds):
        await bench.relay_burst(bench.texts(bench.args.runs))
        await wait_idle(stack)
    profiler.stop()
    files = await asyncio.to_thread(profiler.wait)
    print(f"profiles: {out_dir}")
    return {name: hot_spots(path) for name, path in files.items()}


# ------------------------------------------------------------------ figures


def cpu_result(bench: Bench, rounds: list[Round], name: str) -> dict[str, Any]:
    runs = bench.args.runs * len(rounds)
    cpu = {p: sum(r.cpu_s.get(p, 0.0) for r in rounds) for p in rounds[0].cpu_s}
    window = sum(r.window_s for r in rounds)
    per_run = {p: round(s * 1000 / runs, 2) for p, s in sorted(cpu.items())}
    idle = {p: round(bench.idle_cpu_per_s.get(p, 0.0) * window * 1000 / runs, 2) for p in cpu}
    relay = sum(v for p, v in per_run.items() if is_relay(p))
    result: dict[str, Any] = {
        "scenario": name,
        "load": f"{bench.args.runs} interactive runs at once, {len(rounds)} rounds",
        "sim": vars(bench.sim),
        "runs": runs,
        "relay_cpu_ms_per_run": round(relay, 2),
        "beside_cpu_ms_per_run": {p: per_run.get(p, 0.0) for p in BESIDE},
        "cpu_ms_per_run": per_run,
        "idle_cpu_ms_per_run": idle,
        "relay_cpu_ms_per_run_less_idle": round(
            relay - sum(v for p, v in idle.items() if is_relay(p)), 2
        ),
        "interactive_runners": bench.args.runners,
        "tracing": bench.args.trace,
        "redis": bench.args.redis,
        "machine_load_1m": [round(x, 1) for r in rounds for x in r.load_1m],
        "cpus": os.cpu_count(),
    }
    return judge(result, CPU_TARGETS)


def burst_result(bench: Bench, rounds: list[Round], name: str) -> dict[str, Any]:
    relay = [x for r in rounds for x in ttfts(r.relay)]
    direct = [x for r in rounds for x in ttfts(r.direct)]
    ratios = [r.relay_wall_s / r.direct_wall_s for r in rounds]
    failed = [f for r in rounds for f in failures(r.relay)]
    result: dict[str, Any] = {
        "scenario": name,
        "load": f"{bench.args.runs} interactive runs started at once, {len(rounds)} rounds",
        "sim": vars(bench.sim),
        "samples": len(relay),
        "failed": len(failed),
        "failures": sorted({f[:160] for f in failed})[:3],
        "direct_failed": len([f for r in rounds for f in failures(r.direct)]),
        "wall_ratio": round(statistics.mean(ratios), 2),
        "wall_ratio_per_round": [round(x, 2) for x in ratios],
        "relay_wall_s": [round(r.relay_wall_s, 2) for r in rounds],
        "direct_wall_s": [round(r.direct_wall_s, 2) for r in rounds],
        "ttft_p50_ms": round(percentile(relay, 0.5) * 1000, 1),
        "ttft_p99_ms": round(percentile(relay, 0.99) * 1000, 1),
        "relay_ttft": dist(relay),
        "direct_ttft": dist(direct),
        # What part of the wait the runners see (means per round, ms, from the
        # run's queue entry): the rest is the gateway's accept, state's create
        # and the token's way back through Redis and the gateway.
        "runner_queue_wait_ms_mean": [r.runner_ms.get("queue_wait") for r in rounds],
        "runner_first_token_ms_mean": [r.runner_ms.get("first_token") for r in rounds],
        "interactive_runners": bench.args.runners,
        "tracing": bench.args.trace,
        "redis": bench.args.redis,
        "machine_load_1m": [round(x, 1) for r in rounds for x in r.load_1m],
        "cpus": os.cpu_count(),
    }
    return judge(result, BURST_TARGETS)


def print_rounds(rounds: list[Round]) -> None:
    for n, r in enumerate(rounds):
        relay = ttfts(r.relay)
        print(
            f"round {n}: direct {r.direct_wall_s:.2f} s, relay {r.relay_wall_s:.2f} s "
            f"(x{r.relay_wall_s / r.direct_wall_s:.2f}), relay ttft p50 "
            f"{percentile(relay, 0.5) * 1000:.0f} ms p99 {percentile(relay, 0.99) * 1000:.0f} ms, "
            f"load {r.load_1m[0]:.1f}->{r.load_1m[1]:.1f}; runner means from the queue: "
            f"claim {r.runner_ms.get('queue_wait', float('nan')):.0f} ms, first token "
            f"{r.runner_ms.get('first_token', float('nan')):.0f} ms; cpu s "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.cpu_s.items()))
        )


# ---------------------------------------------------------------------- main


async def bursts(bench: Bench, *, idle: bool) -> list[Round]:
    """Warm up, measure the idle CPU (`idle`), then `--rounds` measured bursts."""
    await warm_up(bench)
    if idle:
        await measure_idle(bench)
    rounds = [await one_round(bench) for _ in range(bench.args.rounds)]
    print_rounds(rounds)
    return rounds


async def measure(args: argparse.Namespace, stack: Stack) -> list[dict[str, Any]]:
    bench = Bench(args, stack, Sim(args.ttft_ms, args.tokens, args.token_delay_ms))
    rounds = await bursts(bench, idle=True)
    suffix = ("-traced" if args.trace else "") + ("+cluster" if args.redis == "cluster" else "")
    cpu = cpu_result(bench, rounds, f"cpu{suffix}@{args.runs}")
    if not args.no_profile:
        cpu["hot_spots"] = await profile(bench, suffix)
    return [cpu, burst_result(bench, rounds, f"burst{suffix}@{args.runs}")]


def workload_options(parser: argparse.ArgumentParser) -> None:
    """The standard workload and its stack (cpu.py's and tracing.py's options)."""
    add = parser.add_argument
    add("--runs", type=int, default=200, help="runs per burst")
    add("--rounds", type=int, default=3, help="measured bursts")
    add("--runners", type=int, default=1, help="interactive runner processes")
    add("--concurrency", type=int, default=250, help="RELAY_RUNNER_CONCURRENCY of each")
    add("--ttft-ms", type=float, default=50.0)
    add("--tokens", type=int, default=20)
    add("--token-delay-ms", type=float, default=50.0)
    add("--redis", choices=["single", "cluster"], default="single",
        help="one Redis, or a local Redis Cluster (3 primaries, 3 replicas)")  # fmt: skip
    add("--log-level", default="", help="RELAY_LOG_LEVEL of every service (default: theirs)")
    add("--no-write", action="store_true", help="leave bench/results.json alone")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    workload_options(parser)
    add = parser.add_argument
    add("--profile-rounds", type=int, default=3, help="bursts under py-spy")
    add("--no-profile", action="store_true", help="skip the py-spy round")
    add("--trace", action="store_true", help="tracing on (100%%), to a discarding receiver")
    add("--keep", action="store_true", help="keep the stack's folder (its logs)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": discarding_receiver()} if args.trace else {}
    stack = start_stack(args, extra_env=extra)
    try:
        results = asyncio.run(measure(args, stack))
    finally:
        stop_stack(stack, keep=args.keep)
    report(results, script="cpu", results_file=RESULTS, write=not args.no_write)


if __name__ == "__main__":
    main()
