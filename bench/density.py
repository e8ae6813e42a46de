"""Density: 1,000 runs in flight on ONE runner process, its memory and its event loop.

    .venv/bin/python bench/density.py [--runs 1000] [--ttft-ms 5000] [--tokens 20]
        [--token-delay-ms 250] [--no-write]

About a minute on this machine with the defaults.

The whole stack runs as processes on free ports (the `relay_devstack`
harness); the background runner is opened to `--runs` slots (1,000 at
most). Runs are created straight through state's internal API (as
services/runner/tests/cpu_per_run.py does: the gateway does no work),
`--runs` of them at once (20 creations in flight, retried when state is
slow), each told by modelsim's `#sim` directive to answer after `--ttft-ms`
(5 s: every run is claimed, started and waiting on its model at the same
time) and then stream `--tokens` tokens `--token-delay-ms`
apart (250 ms: 1,000 runs stream 4,000 tokens a second through the one
process; at the interactive benchmarks' 50 ms it would be 20,000 a second,
more than one Python process can write, so the loop's lag would measure that
rather than what holding runs costs).

Figures (`density@<runs>`, judged by `relay_devstack.bench.judge`):

- `rss_kb_per_run`: (the runner's peak RSS while the runs are in flight -
  its RSS idle after a warm-up of 20 runs) / runs, from /proc/<pid>/statm;
  target <= 50;
- `loop_lag_p99_ms`: the runner's event-loop lag (its
  `relay_runner_event_loop_lag_seconds` histogram: a timer due every 50 ms,
  how late it ran) between the moment every run is in flight and the moment
  every run is terminal, i.e. while they stream; the p99 is the upper bound
  of its histogram bucket; target <= 20; the same over the start-up (create
  and claim of every run) is reported beside;
- `max_in_flight` (must reach `--runs`), `failed` (runs not `succeeded`) == 0,
  the runner's CPU seconds over each window, the machine's load average.

`--profile` runs py-spy on the runner over the whole load (its speedscope
file in bench/artefacts/density/, its hot spots in the result); py-spy
pauses the process it samples, so use it to look, not to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from relay_core.state_api import CreateRunIn
from relay_core.state_client import StateClient, StateUnavailable
from relay_devstack.bench import judge, report, stop_stack
from relay_devstack.harness import stack_data_dir
from relay_devstack.stack import Stack, StackConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from interactive_load import Sim
from procstat import Meter, rss_bytes
from pyspy import Profiler, hot_spots

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
ARTEFACTS = HERE / "artefacts" / "density"
TARGETS = {"rss_kb_per_run": "<= 50", "loop_lag_p99_ms": "<= 20", "failed": "== 0"}
RUNNER = "runner-background"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
BUCKET = re.compile(r'^relay_runner_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$')
IN_FLIGHT = re.compile(r'^relay_runner_runs_in_flight\{pool="background"\} (\S+)$')


# ---------------------------------------------------------------- the runner


def scrape(stack: Stack) -> tuple[dict[float, float], float]:
    """The runner's loop-lag histogram (le -> cumulative count) and runs in flight."""
    text = httpx.get(stack.url(RUNNER) + "/metrics", timeout=5).text
    buckets: dict[float, float] = {}
    in_flight = 0.0
    for line in text.splitlines():
        if m := BUCKET.match(line):
            buckets[float(m.group(1))] = float(m.group(2))
        elif m := IN_FLIGHT.match(line):
            in_flight = float(m.group(1))
    return buckets, in_flight


def lag_p99_ms(before: dict[float, float], after: dict[float, float]) -> float:
    """The upper bound (ms) of the bucket holding the p99 of the lag samples in between."""
    delta = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    for le, count in delta.items():
        if count >= 0.99 * total:
            return le * 1000 if le != float("inf") else float("inf")
    return float("inf")


# ---------------------------------------------------------------- the runs


async def create_runs(state: StateClient, text: str, n: int) -> list[str]:
    """`n` runs, 20 creations in flight; a creation state could not make in time
    (its Postgres pool is the limit on a loaded machine) is retried under the
    same idempotency key, so it is still one run."""
    slots = asyncio.Semaphore(20)

    async def one() -> str:
        req = CreateRunIn(
            user_id=f"density-{uuid.uuid4().hex[:8]}",
            message=text,
            model="sim-default",
            kind="background",
            idempotency_key=uuid.uuid4().hex,
        )
        async with slots:
            for _ in range(4):
                try:
                    run, _ = await state.create_run(req)
                    return run.run_id
                except StateUnavailable:
                    await asyncio.sleep(0.5)
            run, _ = await state.create_run(req)
        return run.run_id

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def wait_terminal(state: StateClient, ids: list[str], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        statuses: dict[str, str] = {}
        for i in range(0, len(ids), 1000):
            statuses |= await state.run_statuses(ids[i : i + 1000])
        if len(statuses) == len(ids) and set(statuses.values()) <= TERMINAL:
            return statuses
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs not terminal within {timeout_s} s")
        await asyncio.sleep(0.5)


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    state = StateClient(stack.state_url, stack.config.internal_token, timeout_s=30)
    pid = stack.pid(RUNNER)
    try:
        warm = await create_runs(state, Sim(10, 5, 1).message(0), 20)
        await wait_terminal(state, warm, 60)
        await asyncio.sleep(1.0)  # the warm-up's last acks and frees
        rss0 = rss_bytes(pid)
        lag0, _ = await asyncio.to_thread(scrape, stack)
        cpu = Meter({RUNNER: pid})
        load0 = os.getloadavg()[0]
        profiler = Profiler({RUNNER: pid}, ARTEFACTS) if args.profile else None
        sim = Sim(args.ttft_ms, args.tokens, args.token_delay_ms)
        ids = await create_runs(state, sim.message(1), args.runs)
        peak_in_flight, peak_rss = 0.0, rss0
        deadline = time.monotonic() + 60
        lag1: dict[float, float] = {}
        while time.monotonic() < deadline:
            lag1, in_flight = await asyncio.to_thread(scrape, stack)
            peak_in_flight = max(peak_in_flight, in_flight)
            peak_rss = max(peak_rss, rss_bytes(pid))
            if in_flight >= args.runs:
                break
            await asyncio.sleep(0.1)
        started_cpu = cpu.used()[RUNNER]
        sampling = True

        async def sample_rss() -> None:
            nonlocal peak_rss
            while sampling:
                peak_rss = max(peak_rss, rss_bytes(pid))
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample_rss())
        statuses = await wait_terminal(state, ids, 120)
        sampling = False
        await sampler
        lag2, _ = await asyncio.to_thread(scrape, stack)
        spots = {}
        if profiler is not None:
            profiler.stop()
            spots = {n: hot_spots(p) for n, p in (await asyncio.to_thread(profiler.wait)).items()}
    finally:
        await state.aclose()
    failed = sum(1 for s in statuses.values() if s != "succeeded")
    result: dict[str, Any] = {
        "scenario": f"density@{args.runs}",
        "load": f"{args.runs} background runs in flight on one runner process",
        "sim": vars(sim),
        "runs": args.runs,
        "max_in_flight": peak_in_flight,
        "failed": failed,
        "rss_idle_mb": round(rss0 / 2**20, 1),
        "rss_peak_mb": round(peak_rss / 2**20, 1),
        "rss_kb_per_run": round((peak_rss - rss0) / 1024 / args.runs, 1),
        "loop_lag_p99_ms": lag_p99_ms(lag1, lag2),
        "loop_lag_p99_ms_startup": lag_p99_ms(lag0, lag1),
        "runner_cpu_s_startup": round(started_cpu, 2),
        "runner_cpu_s_total": round(cpu.used()[RUNNER], 2),
        "machine_load_1m": [round(load0, 1), round(os.getloadavg()[0], 1)],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    if spots:  # py-spy pauses the process it samples: the figures above are not clean
        result["hot_spots_profiled_run"] = spots
    return judge(result, TARGETS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--runs", type=int, default=1000)
    add("--ttft-ms", type=float, default=5000.0)
    add("--tokens", type=int, default=20)
    add("--token-delay-ms", type=float, default=250.0)
    add("--profile", action="store_true", help="py-spy on the runner (figures then not clean)")
    add("--keep", action="store_true", help="keep the stack's folder (its logs)")
    add("--no-write", action="store_true", help="leave bench/results.json alone")
    args = parser.parse_args()
    overrides = {RUNNER: {"RELAY_RUNNER_CONCURRENCY": str(args.runs)}}
    stack = Stack(StackConfig.for_tests(stack_data_dir("relay-bench-density-"), overrides))
    stack.start()
    try:
        result = asyncio.run(measure(stack, args))
    finally:
        stop_stack(stack, keep=args.keep)
    report([result], script="density", results_file=RESULTS, write=not args.no_write)


if __name__ == "__main__":
    main()
