"""The reporting of bench/fanout.py and bench/interactive.py, on synthetic
measurements: their targets parse, name figures they report, and give the
verdict they gave before targets moved to `relay_devstack.bench.judge`
(fan-out: 10k subscribers, 1-16 Redis connections, p99 < 100 ms, 20k events/s;
interactive: added TTFT p99 < 50 ms, no failed request, at least one sample)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from array import array
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fanout() -> ModuleType:
    return load("fanout")


@pytest.fixture(scope="module")
def interactive() -> ModuleType:
    return load("interactive")


def fanout_result(
    fanout: ModuleType, *, conns: int = 3, latency_s: float = 0.01, failures: int = 0
) -> dict[str, Any]:
    """One 1-second phase: 20,000 deliveries to 10,000 subscribers of 2,000 runs."""
    args = argparse.Namespace(subscribers=10_000)
    samples = array("d", [x for _ in range(20_000) for x in (1.5, latency_s)])
    pub = {"t0": 1.0, "t1": 2.0, "published": 4_000, "elapsed_s": 1.0, "rate": 4_000.0}
    sampler = fanout.Sampler("redis://unused", "relay-events", 0, [], peak_conns=conns)
    phase = fanout.Phase(4_000.0, pub, sampler, 0.5)
    common = {"connect_s": 1.0, "connect_failures": {"503": failures} if failures else {},
              "connect_retries": {}, "done": 10_000, "cut": 0}  # fmt: skip
    result: dict[str, Any] = fanout.summarize(
        args, "http", [f"run_{i}" for i in range(2_000)], samples, phase, common
    )
    return result


@pytest.mark.parametrize(
    ("kwargs", "missed"),
    [
        ({}, []),
        ({"conns": 0}, ["redis_connections"]),
        ({"conns": 17}, ["redis_connections"]),
        ({"latency_s": 0.2}, ["latency_p99_ms"]),
        ({"failures": 1}, ["subscribers"]),
    ],
)
def test_fanout_verdicts(fanout: ModuleType, kwargs: dict[str, Any], missed: list[str]) -> None:
    result = fanout_result(fanout, **kwargs)
    assert result["scenario"] == "http@20000/s"
    assert set(result["targets"]) <= set(result)  # every target names a reported figure
    assert [f for f, ok in result["targets_met"].items() if not ok] == missed
    assert result["met"] is (not missed)


def test_fanout_wake_targets_name_its_figure(fanout: ModuleType) -> None:
    assert set(fanout.WAKE_TARGETS) == {"first_event_p99_ms"}
    from relay_devstack.bench import judge

    wake = judge({"scenario": "wake", "first_event_p99_ms": 4.2}, fanout.WAKE_TARGETS)
    assert wake["met"] is True


def interactive_result(
    interactive: ModuleType, *, added_s: float = 0.02, failed: int = 0, samples: int = 50
) -> dict[str, Any]:
    timing = interactive.Timing
    # the segment names live with the breakdown, in a sibling the script put on sys.path
    segment_names = importlib.import_module("interactive_report").SEGMENTS
    relay = [timing(ttft=0.2 + added_s, ended=True) for _ in range(samples)]
    relay += [timing(ttft=None, error="503") for _ in range(failed)]
    phase = interactive.Phase(
        relay=relay,
        segments={s: [0.01] for s in segment_names},
        cpu_s={"gateway": 0.5},
        state_routes={},
        runs_total=samples + failed,
        wall_s=1.0,
        load_1m=0.3,
        sdk=[timing(ttft=0.2, ended=True) for _ in range(10)],
    )
    sim = interactive.Sim(200.0, 20, 5.0)
    args = argparse.Namespace(runners=2, concurrency=250)
    result: dict[str, Any] = interactive.summarize("interactive-x", "load", [phase], sim, args)
    return result


@pytest.mark.parametrize(
    ("kwargs", "missed"),
    [
        ({}, []),
        ({"added_s": 0.08}, ["added_ttft_p99_ms"]),
        ({"failed": 1}, ["failed"]),
        ({"samples": 0, "failed": 1}, ["added_ttft_p99_ms", "failed"]),
    ],
)
def test_interactive_verdicts(
    interactive: ModuleType, kwargs: dict[str, Any], missed: list[str]
) -> None:
    result = interactive_result(interactive, **kwargs)
    assert set(result["targets"]) <= set(result)
    assert [f for f, ok in result["targets_met"].items() if not ok] == missed
    assert result["met"] is (not missed)
