"""interactive.py's figures: per-request segments, one scenario's summary, the table.

A measured load is a `Phase` (its relay timings, their baselines, what it
cost); `summarize` turns a scenario's phases into the reported object,
judged against `TARGETS` (`relay_devstack.bench.judge`: added TTFT p99 < 50
ms, no failed request; no relay sample gives a NaN p99, not met), and
`print_table` prints the scenarios for a reader.

Relay's ADDED time-to-first-token of a request = its relay TTFT minus the
median `sdk` TTFT of the same scenario. `breakdown` splits each relay TTFT
into the segments of `SEGMENTS` from wall-clock marks only (the client's, and
Redis stream ids, which are Redis' clock in ms); bench/interactive.py's
docstring says what each segment holds.

Not a bench script (no `main()`): bench/interactive.py imports it as a sibling.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
from benchstats import dist, percentile, spread
from interactive_load import Sim
from leanhttp import Timing

from relay_devstack.bench import judge

TARGETS = {"added_ttft_p99_ms": "< 50", "failed": "== 0"}  # relay_devstack.bench.judge
SEGMENTS = ("headers", "gateway", "pickup", "model", "deliver")
CLIENT = "relay and raw: asyncio HTTP/1.1 protocol; sdk: anthropic.AsyncAnthropic"


@dataclass
class Phase:
    """One measured load: the relay requests, their baselines, and what it all cost."""

    relay: list[Timing]
    segments: dict[str, list[float]]
    cpu_s: dict[str, float]
    state_routes: dict[str, dict[str, float]]
    runs_total: int  # relay runs started, ramp included (what the CPU paid for)
    wall_s: float
    load_1m: float
    in_flight: list[int] = field(default_factory=list)
    # runs queued during the phase whose request got no stream (an error answer)
    orphans: int = 0
    sdk: list[Timing] = field(default_factory=list)
    raw: list[Timing] = field(default_factory=list)


# -------------------------------------------------------------- the breakdown


def id_ms(stream_id: str | None) -> float | None:
    if not stream_id:
        return None
    return int(stream_id.split("-")[0]) / 1000


def breakdown(timings: list[Timing], enqueued: dict[str, float]) -> dict[str, list[float]]:
    """Per-request segments (seconds) of the relay TTFT; see the module docstring."""
    out: dict[str, list[float]] = {k: [] for k in SEGMENTS}
    for t in timings:
        start, token = t.first.get("start"), t.first.get("token")
        enq = enqueued.get(t.headers.get("relay-run-id", ""))
        if start is None or token is None or enq is None:
            continue
        start_at, token_at = id_ms(start[0]), id_ms(token[0])
        if start_at is None or token_at is None:
            continue
        out["headers"].append(t.t_head - t.t0)
        out["gateway"].append(enq - t.t0)
        out["pickup"].append(start_at - enq)
        out["model"].append(token_at - start_at)
        out["deliver"].append(token[1] - token_at)
    return out


# ----------------------------------------------------------------- reporting


def failures(timings: list[Timing]) -> list[str]:
    return [t.error or "no first token" for t in timings if t.ttft is None or not t.ended]


def ttfts(timings: list[Timing]) -> list[float]:
    return [t.ttft for t in timings if t.ttft is not None and t.ended]


def pooled_routes(phases: list[Phase]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for phase in phases:
        for route, r in phase.state_routes.items():
            acc = out.setdefault(route, {"requests": 0.0, "mean_ms": 0.0})
            n = acc["requests"] + r["requests"]
            acc["mean_ms"] = round(
                (acc["mean_ms"] * acc["requests"] + r["mean_ms"] * r["requests"]) / n, 1
            )
            acc["requests"] = n
    return out


def summarize(
    name: str, load: str, phases: list[Phase], sim: Sim, args: argparse.Namespace
) -> dict[str, Any]:
    sdk = [x for p in phases for x in ttfts(p.sdk)]
    raw = [x for p in phases for x in ttfts(p.raw)]
    relay = [x for p in phases for x in ttfts(p.relay)]
    base = statistics.median(sdk) if sdk else float("nan")
    added = [x - base for x in relay]
    failed = [f for p in phases for f in failures(p.relay)]
    runs_total = sum(p.runs_total for p in phases)
    cpu = {proc: sum(p.cpu_s.get(proc, 0.0) for p in phases) for proc in phases[0].cpu_s}
    added_p99 = percentile(added, 0.99) * 1000
    result: dict[str, Any] = {
        "scenario": name,
        "load": load,
        "samples": len(relay),
        "failed": len(failed),
        "failures": dict(Counter(f[:160] for f in failed).most_common(3)),
        "runs_queued_without_stream": sum(p.orphans for p in phases),
        "sim": asdict(sim),
        "interactive_runners": args.runners,
        "runner_concurrency": args.concurrency,
        "added_ttft_p50_ms": round(percentile(added, 0.5) * 1000, 1),
        "added_ttft_p99_ms": round(added_p99, 1),
        "added_ttft_max_ms": round(max(added, default=float("nan")) * 1000, 1),
        "baseline_median_ms": round(base * 1000, 1),
        "relay_ttft": dist(relay),
        "model_ttft_sdk": dist(sdk),
    }
    if raw:
        base_raw = statistics.median(raw)
        result["model_ttft_raw"] = dist(raw)
        result["added_ttft_vs_raw_p50_ms"] = round((percentile(relay, 0.5) - base_raw) * 1000, 1)
        result["added_ttft_vs_raw_p99_ms"] = round((percentile(relay, 0.99) - base_raw) * 1000, 1)
    if len(phases) > 1:
        result["added_ttft_p99_ms_per_round"] = [
            round((percentile(ttfts(p.relay), 0.99) - base) * 1000, 1) for p in phases
        ]
    if phases[0].in_flight:
        result["in_flight_at_start"] = spread([n for p in phases for n in p.in_flight])
    result |= {
        "segments": {s: dist([x for p in phases for x in p.segments[s]]) for s in SEGMENTS},
        "runner_part_of_model_segment": dist(
            [x - base for p in phases for x in p.segments["model"]]
        ),
        "state_server_mean_ms": pooled_routes(phases),
        "relay_wall_s": round(statistics.mean(p.wall_s for p in phases), 2),
        "cpu_ms_per_run": {proc: round(s * 1000 / runs_total, 1) for proc, s in cpu.items()},
        "machine_load_1m": round(max(p.load_1m for p in phases), 1),
        "cpus": psutil.cpu_count(),
        "client": CLIENT,
    }
    return judge(result, TARGETS)  # no relay sample: a NaN p99, not met


def _row(label: str, d: dict[str, float]) -> str:
    return f"  {label:<24}" + "".join(f"{v:>9}" for v in d.values())


def print_table(results: list[dict[str, Any]]) -> None:
    cols = ["scenario", "samples", "failed", "baseline_median_ms", "added_ttft_p50_ms",
            "added_ttft_p99_ms", "added_ttft_vs_raw_p99_ms", "submits_per_s", "latency_p99_ms",
            "machine_load_1m", "met"]  # fmt: skip
    rows = [[str(r.get(c, "")) for c in cols] for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    for r in results:
        print(f"\n{r['scenario']}: {r['load']}")
        if "segments" not in r:  # the submit scenario: its row says it all
            continue
        print(f"  {'(ms)':<24}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
        for label in ("relay_ttft", "model_ttft_sdk", "model_ttft_raw", "in_flight_at_start"):
            if label in r:
                print(_row(label.replace("_at_start", " (count)"), r[label]))
        for seg, d in r["segments"].items():
            print(_row(f"- {seg}", d))
        print(_row("- runner part of model", r["runner_part_of_model_segment"]))
        print(f"  cpu ms per run: {json.dumps(r['cpu_ms_per_run'])}")
        print(f"  state server time: {json.dumps(r['state_server_mean_ms'])}")
    print(f"\ntargets: {json.dumps(TARGETS)}")
