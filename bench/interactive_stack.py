"""The stack under interactive.py's load: started, waited on, and read from.

`start_stack` runs the whole stack as processes on free ports (the
`relay_devstack` harness), with the interactive pool opened wide
(`RELAY_RUNNER_CONCURRENCY` per runner, `--runners` runner processes) and the
gateway's per-key limits out of the way, so what is measured is Relay's
latency, not its admission control. `wait_idle` polls the gateway until no
interactive run is in flight, so each measured load starts from the same
place.

What the stack says about itself over a measured load, with no
instrumentation in the services: CPU seconds of every process (`CpuMeter`,
psutil), state's own server time per internal route (`state_route_totals`
and `state_route_means`, from its latency histogram on /metrics), and when
each run entered the interactive queue (`enqueue_times`: a Redis stream id
is Redis' clock in ms, and the client and Redis share this machine's clock).

Not a bench script (no `main()`): bench/interactive.py imports it as a sibling.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from typing import Any

import httpx
import psutil

from relay_core import keys, partitions
from relay_core.redis import create_redis, stream_entries
from relay_devstack.harness import stack_data_dir
from relay_devstack.stack import Stack, StackConfig

SERVICES = ["gateway", "state", "modelsim", "redis", "postgres", "events"]
METRIC_LINE = re.compile(r"^(relay_state_request_duration_seconds_(?:sum|count))\{(.*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


# ------------------------------------------------------------------ the stack


def start_stack(args: argparse.Namespace, extra_env: dict[str, str] | None = None) -> Stack:
    """`extra_env`: for every service (tracing's OTLP endpoint, say)."""
    runner_env = {"RELAY_RUNNER_CONCURRENCY": str(args.concurrency)}
    overrides = {
        "runner-interactive": runner_env,
        "gateway": {
            "RELAY_MAX_CONCURRENT_RUNS": str(max(1000, 5 * args.runs)),
            "RELAY_RATE_LIMIT_PER_MIN": "100000",
            "RELAY_INTERACTIVE_QUEUE_TIMEOUT_S": "30",
            # The bench's one key stands for many users: the whole pool is its
            # share (docs/design.md, "Noisy neighbours").
            "RELAY_INTERACTIVE_TENANT_SHARE": "1",
        },
    }
    overrides["all"] = dict(extra_env or {})
    if args.log_level:
        overrides["all"]["RELAY_LOG_LEVEL"] = args.log_level
    config = StackConfig.for_tests(
        stack_data_dir("relay-bench-interactive-"),
        overrides,
        redis_cluster=getattr(args, "redis", "single") == "cluster",
    )
    stack = Stack(config)
    stack.start()
    try:
        for n in range(1, args.runners):
            stack.start_extra_runner("interactive", f"runner-interactive-{n + 1}", env=runner_env)
    except BaseException:
        stack.stop()
        raise
    return stack


def runner_names(stack: Stack) -> list[str]:
    return [n for n in stack.specs if n.startswith("runner-interactive")]


async def wait_idle(stack: Stack, timeout_s: float = 60.0) -> None:
    """Until the gateway sees no interactive run in flight (every slot released)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=stack.management_url("gateway"), timeout=2.0) as http:
        while True:
            health = (await http.get("/healthz")).json()  # the detailed one
            if health.get("interactive_in_flight") == 0 and health.get("streams_open") == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not go idle within {timeout_s}s: {health}")
            await asyncio.sleep(0.2)


# ------------------------------------------------------------------ CPU usage


class CpuMeter:
    """CPU seconds of each process of the stack (and of this client) over a window.

    A process's children count as its own (Postgres is a postmaster and one
    backend per connection); they are listed anew at each reading, so a
    backend started during the window counts in full.
    """

    def __init__(self, stack: Stack, names: list[str]) -> None:
        self.roots: dict[str, psutil.Process] = {"client": psutil.Process()}
        for name in names:
            child = stack.child(name)
            if child is not None:
                self.roots[name] = psutil.Process(child.pid)
        self.start = self._read()

    def _read(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, root in self.roots.items():
            out[name] = {}
            try:
                # this client's children are the stack: they count on their own
                kids = [] if name == "client" else root.children(recursive=True)
            except psutil.Error:
                continue
            procs = [root, *kids]
            for proc in procs:
                try:
                    times = proc.cpu_times()
                except psutil.Error:
                    continue  # ended meanwhile
                out[name][proc.pid] = times.user + times.system
        return out

    def used(self) -> dict[str, float]:
        end = self._read()
        return {
            name: round(sum(t - self.start[name].get(pid, 0.0) for pid, t in pids.items()), 2)
            for name, pids in end.items()
        }


# ------------------------------------------------------- the interactive queue


async def enqueue_times(redis_url: str) -> dict[str, float]:
    """run id -> when its entry was added to the interactive queue (Redis clock)."""
    rc = create_redis(redis_url)
    try:
        entries: Any = [
            entry
            for partition in range(partitions.count())
            for entry in stream_entries(await rc.xrange(keys.queue("interactive", partition)))
        ]
    finally:
        await rc.aclose()
    return {f["run_id"]: int(eid.split("-")[0]) / 1000 for eid, f in entries if "run_id" in f}


# --------------------------------------------------- state's own server time


async def state_route_totals(stack: Stack) -> dict[str, tuple[float, float]]:
    """route -> (seconds, requests) so far, from state's latency histogram."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(f"{stack.management_url('state')}/metrics")).text
    out: dict[str, tuple[float, float]] = {}
    for line in text.splitlines():
        m = METRIC_LINE.match(line)
        if m is None:
            continue
        labels = dict(LABEL.findall(m.group(2)))
        route = f"{labels.get('method', '')} {labels.get('route', '')}"
        total, count = out.get(route, (0.0, 0.0))
        if m.group(1).endswith("_sum"):
            out[route] = (total + float(m.group(3)), count)
        else:
            out[route] = (total, count + float(m.group(3)))
    return out


def state_route_means(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """Requests and mean server time per state route between two readings."""
    out: dict[str, dict[str, float]] = {}
    for route, (total, count) in after.items():
        total0, count0 = before.get(route, (0.0, 0.0))
        if count - count0 >= 1 and "/internal/" in route:
            n = count - count0
            out[route] = {"requests": n, "mean_ms": round((total - total0) / n * 1000, 1)}
    return out
