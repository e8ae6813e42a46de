"""fanout.py's figures: one phase's summary, judged, and the table.

A measured rate is a `Phase` (what the publisher sent, what the `Sampler`
saw, the load average); `summarize` turns it, with the latencies the
subscribers recorded, into the reported object, judged against `TARGETS`
(`relay_devstack.bench.judge`; a lighter load step below 20,000 events/s is
judged on everything but the rate), and `print_table` prints the scenarios
for a reader. `WAKE_TARGETS` is the `wake` scenario's (fanout_roles.py's
`wake_latency` judges it).

Not a bench script (no `main()`): bench/fanout.py imports it as a sibling.
"""

from __future__ import annotations

import argparse
import json
from array import array
from dataclasses import dataclass
from typing import Any

from benchstats import percentile
from fanout_stack import Sampler

from relay_devstack.bench import judge

TARGETS = {  # figure: target (relay_devstack.bench.judge)
    "subscribers": ">= 10000",
    "redis_connections": "1..16",  # 0: the sampler saw none, which is no pass
    "latency_p99_ms": "< 100",
    "aggregate_events_per_s": ">= 20000",
    "delivered_ratio": ">= 1",  # every event to every subscriber
}
WAKE_TARGETS = {"first_event_p99_ms": "< 50"}
# On a 3-primary cluster: a reader per partition (24), 15 pooled per primary, and
# the connection redis-py keeps to the node it reads the slot map from.
CLUSTER_CONNECTIONS = "1..70"


@dataclass
class Phase:
    """One publish rate on the same connected subscribers."""

    rate: float
    pub: dict[str, float]
    sampler: Sampler
    load_1m: float


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
    cluster = getattr(args, "redis", "single") == "cluster"
    name = f"{scenario}+cluster" if cluster else scenario
    result = {
        "scenario": f"{name}@{round(phase.rate * args.subscribers / len(run_ids))}/s",
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
    targets = dict(TARGETS)
    if phase.rate * args.subscribers / len(run_ids) < 20_000:  # a lighter load step:
        del targets["aggregate_events_per_s"]
    if cluster:
        targets["redis_connections"] = CLUSTER_CONNECTIONS
    return judge(result, targets)


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
