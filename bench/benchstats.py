"""Percentiles of measured samples, shared by the bench scripts (fanout.py, interactive.py).

Why nearest-rank on the sorted samples, not `statistics.quantiles`: the figure
reported is always one measured value (a p99 is a request that happened), and
an empty sample gives NaN, which `relay_devstack.bench.judge` holds as not met
instead of raising mid-report.

Not a bench script (no `main()`): `relay_devstack.bench` runs only files that
define one. The scripts import it as a sibling, their folder on `sys.path`.
"""

from __future__ import annotations

from collections.abc import Sequence

QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def dist(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of values in seconds, as milliseconds."""
    return {f"{name}_ms": round(percentile(values, q) * 1000, 1) for name, q in QUANTILES}


def spread(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of plain values (counts)."""
    return {name: percentile(values, q) for name, q in QUANTILES}
