"""Tracing's CPU overhead: the burst of chats with every run traced, against untraced.

    .venv/bin/python bench/tracing.py [--starts 3] [--rounds 3] [--runs 200]
        [--redis single|cluster] [--no-write]

About six minutes on this machine with the defaults.

The workload and the measuring are bench/cpu.py's (200 interactive runs
started at once, 20 tokens each; CPU per process from /proc deltas; Relay's
processes summed), without its profile round. Traced, every service exports
every span over OTLP/HTTP to a receiver in this process that discards them
(`relay_devstack.otlpsink`), as they would to a collector.

Why several starts, alternated: on this shared 2-core machine the host's
speed drifts by tens of percent over minutes, more than tracing costs. So
`--starts` stacks without tracing and as many with are started alternately
(off, on, off, on, ...), `--rounds` bursts each, and the figures are:

- `overhead_pct`: the median round's Relay CPU per run, on against off
  (judged: < 15, the issue's target);
- `overhead_pct_normalised`: the same with each round's Relay CPU divided
  by what modelsim used in that round (its work does not change with
  tracing, so this takes out most of the drift); reported, not judged;
- every round's figure, and every process's median on and off.

Scenario `tracing-overhead@<runs>` (`+cluster` with `--redis cluster`),
judged by `relay_devstack.bench.judge` and merged into bench/results.json
(unless `--no-write`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from relay_devstack.bench import judge, report, stop_stack
from relay_devstack.otlpsink import discarding_receiver

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu import Bench, Round, bursts, is_relay, workload_options
from interactive_load import Sim
from interactive_stack import start_stack

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
TARGETS = {"overhead_pct": "< 15"}


def relay_ms(r: Round, runs: int) -> float:
    return sum(s for p, s in r.cpu_s.items() if is_relay(p)) * 1000 / runs


def reference_ms(r: Round, runs: int) -> float:
    """What modelsim used: the same work traced or not. (Not the load client:
    the discarding receiver is a thread of this process, so its CPU grows with
    tracing.)"""
    return r.cpu_s.get("modelsim", 0.0) * 1000 / runs


def overhead_result(args: argparse.Namespace, off: list[Round], on: list[Round]) -> dict[str, Any]:
    runs = args.runs
    off_ms = [relay_ms(r, runs) for r in off]
    on_ms = [relay_ms(r, runs) for r in on]
    off_norm = statistics.mean(relay_ms(r, runs) / reference_ms(r, runs) for r in off)
    on_norm = statistics.mean(relay_ms(r, runs) / reference_ms(r, runs) for r in on)

    def medians(rounds: list[Round]) -> dict[str, float]:
        names = sorted({p for r in rounds for p in r.cpu_s})
        return {
            p: round(statistics.median(r.cpu_s.get(p, 0.0) for r in rounds) * 1000 / runs, 2)
            for p in names
        }

    suffix = "+cluster" if args.redis == "cluster" else ""
    result: dict[str, Any] = {
        "scenario": f"tracing-overhead{suffix}@{runs}",
        "load": f"{runs} interactive runs at once; {args.starts} starts each way, "
        f"alternating, {args.rounds} rounds each",
        "sim": {
            "ttft_ms": args.ttft_ms,
            "tokens": args.tokens,
            "token_delay_ms": args.token_delay_ms,
        },
        "overhead_pct": round(100 * (statistics.median(on_ms) / statistics.median(off_ms) - 1), 1),
        "overhead_pct_normalised": round(100 * (on_norm / off_norm - 1), 1),
        "relay_cpu_ms_per_run_off": round(statistics.median(off_ms), 2),
        "relay_cpu_ms_per_run_on": round(statistics.median(on_ms), 2),
        "rounds_off_ms": [round(x, 2) for x in off_ms],
        "rounds_on_ms": [round(x, 2) for x in on_ms],
        "cpu_ms_per_run_off": medians(off),
        "cpu_ms_per_run_on": medians(on),
        "redis": args.redis,
        "machine_load_1m": [round(x, 1) for r in [*off, *on] for x in r.load_1m],
        "cpus": os.cpu_count(),
    }
    return judge(result, TARGETS)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    receiver = discarding_receiver()
    rounds: dict[bool, list[Round]] = {False: [], True: []}
    for start in range(args.starts):
        for traced in (False, True):
            print(f"start {start + 1}/{args.starts}, tracing {'on' if traced else 'off'}")
            extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver} if traced else {}
            stack = start_stack(args, extra_env=extra)
            try:
                bench = Bench(args, stack, Sim(args.ttft_ms, args.tokens, args.token_delay_ms))
                rounds[traced] += asyncio.run(bursts(bench, idle=False))
            finally:
                stop_stack(stack, keep=False)
    return [overhead_result(args, rounds[False], rounds[True])]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3, help="stacks each way, alternating")
    workload_options(parser)  # --rounds: measured bursts per start
    args = parser.parse_args()
    args.trace = False  # cpu.Bench reads it; each start says its own
    return args


def main() -> None:
    args = parse_args()
    report(measure(args), script="tracing", results_file=RESULTS, write=not args.no_write)


if __name__ == "__main__":
    main()
