"""The measuring parts of bench/cpu.py, tracing.py, accept.py and density.py on known inputs:
CPU seconds from /proc deltas (a process tree, reaped children included), the
hot spots of a speedscope profile (waiting threads left out), the event-loop
lag p99 from two readings of a Prometheus histogram."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from relay_devstack.bench import judge

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(scope="module")
def bench_path() -> None:
    sys.path.insert(0, str(BENCH))


def _module(name: str) -> ModuleType:
    import importlib

    return importlib.import_module(name)


def test_a_tree_counts_a_child_that_exited_during_the_window(bench_path: None) -> None:
    procstat = _module("procstat")
    meter = procstat.Meter({"me": os.getpid()})
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)  # reaped: in our cutime
    used = meter.used()["me"]
    assert used >= 0.25  # the child's 0.3 s, whole, at 10 ms ticks


def test_own_time_leaves_children_out(bench_path: None) -> None:
    procstat = _module("procstat")
    meter = procstat.Meter({"me": os.getpid()}, own=frozenset({"me"}))
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    started = time.process_time()
    while time.process_time() - started < 0.1:
        pass
    assert 0.05 <= meter.used()["me"] < 0.25


def test_rss_of_this_process_is_some_megabytes(bench_path: None) -> None:
    procstat = _module("procstat")
    assert procstat.rss_bytes(os.getpid()) > 10 * 2**20
    assert procstat.rss_bytes(2**22 + 12345) == 0  # no such process


def test_a_clusters_nodes_are_summed_into_redis(bench_path: None) -> None:
    cpu = _module("cpu")
    used = {"redis.0": 0.25, "redis.1": 0.5, "redis.5": 0.125, "gateway": 1.0, "client": 2.0}
    assert cpu.merged(used) == {"redis": 0.875, "gateway": 1.0, "client": 2.0}
    assert cpu.merged({"redis": 0.5, "state": 0.25}) == {"redis": 0.5, "state": 0.25}


def test_tracing_overhead_is_judged_on_medians_and_reported_normalised(
    bench_path: None,
) -> None:
    import argparse

    cpu, tracing = _module("cpu"), _module("tracing")
    args = argparse.Namespace(
        runs=100, rounds=2, starts=1, ttft_ms=50.0, tokens=20,
        token_delay_ms=50.0, redis="single",
    )  # fmt: skip

    def round_(relay_s: float, reference_s: float) -> object:
        cpu_s = {
            "gateway": relay_s / 2,
            "runner-interactive": relay_s / 2,
            "client": 0.3,  # the OTLP receiver is in the client's process: not a reference
            "modelsim": reference_s,
            "postgres": 9.0,
        }
        return cpu.Round([], [], 1.0, 1.0, cpu_s, 1.0, (0.5, 0.5))

    # off: 0.8 s per 100 runs (8 ms per run), on: 0.88 (+10%), the host as fast
    off = [round_(0.8, 0.2), round_(0.8, 0.2)]
    on = [round_(0.88, 0.2), round_(0.88, 0.2)]
    result = tracing.overhead_result(args, off, on)
    assert result["relay_cpu_ms_per_run_off"] == 8.0 and result["relay_cpu_ms_per_run_on"] == 8.8
    assert result["overhead_pct"] == 10.0 and result["overhead_pct_normalised"] == 10.0
    assert result["met"] is True
    # The host 20% slower during the "on" starts: the medians see +32%, the
    # normalised figure still +10%; the target is judged on the medians.
    slow = [round_(0.88 * 1.2, 0.2 * 1.2), round_(0.88 * 1.2, 0.2 * 1.2)]
    result = tracing.overhead_result(args, off, slow)
    assert result["overhead_pct"] == 32.0 and result["overhead_pct_normalised"] == 10.0
    assert result["met"] is False
    assert result["cpu_ms_per_run_on"]["postgres"] == 90.0


def test_hot_spots_leave_waiting_threads_out(bench_path: None, tmp_path: Path) -> None:
    pyspy = _module("pyspy")
    frames = [
        {"name": "main", "file": "/app/.venv/bin/relay-runner"},
        {"name": "encode", "file": "/x/site-packages/relay_core/sse.py"},
        {"name": "dumps", "file": "/usr/lib/python3.11/json/__init__.py"},
        {"name": "Condition.wait", "file": "/usr/lib/python3.11/threading.py"},
    ]
    profiles = [
        {"type": "sampled", "samples": [[0, 1], [0, 1, 2], [0, 1, 2]], "weights": [1, 1, 2]},
        {"type": "sampled", "samples": [[0, 3]] * 10, "weights": [1] * 10},  # a parked thread
    ]
    path = tmp_path / "p.speedscope.json"
    path.write_text(json.dumps({"shared": {"frames": frames}, "profiles": profiles}))
    spots = pyspy.hot_spots(path)
    assert spots["samples"] == 4
    assert spots["self_pct"] == [
        ["dumps (json/__init__.py)", 75.0],
        ["encode (relay_core/sse.py)", 25.0],
    ]
    assert dict(spots["package_self_pct"]) == {"json": 75.0, "relay_core": 25.0}
    # main and encode hold every sample (entry frames): only dumps is listed
    assert spots["inclusive_pct"] == [["dumps (json/__init__.py)", 75.0]]


def test_loop_lag_p99_is_the_bucket_bound_of_the_window(bench_path: None) -> None:
    density = _module("density")
    inf = float("inf")
    before = {0.001: 10.0, 0.005: 10.0, 0.02: 10.0, 0.1: 10.0, inf: 10.0}
    after = {0.001: 900.0, 0.005: 1005.0, 0.02: 1009.0, 0.1: 1010.0, inf: 1010.0}
    assert density.lag_p99_ms(before, after) == 5.0  # 995 of 1000 within 5 ms
    assert math.isnan(density.lag_p99_ms(after, after))  # no sample: not met
    verdict = judge(
        {"scenario": "d", "loop_lag_p99_ms": float("nan")}, {"loop_lag_p99_ms": "<= 20"}
    )
    assert verdict["met"] is False
