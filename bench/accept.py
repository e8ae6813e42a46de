"""Accepting runs: `POST /v1/runs` throughput and latency, queue only and while runners drain.

    .venv/bin/python bench/accept.py [--runs 1000] [--concurrency 50]
        [--drain-concurrency 100] [--no-write]

About a minute on this machine with the defaults.

The whole stack runs as processes on free ports (the `relay_devstack`
harness), the gateway's per-key limits out of the way. `--concurrency`
keep-alive connections each send `POST /v1/runs` one after another (a closed
loop: a new request as soon as the previous answer arrived) until `--runs`
runs were submitted; every answer must be 202. Two phases:

- `accept-queue@<runs>`: the background runner is stopped, so the runs are
  only recorded and queued (the issue's "accept, don't hold"): targets
  `runs_per_s` >= 1000 and `latency_p99_ms` <= 50, no failure;
- `accept-draining@<runs>`: the background runner (`--drain-concurrency`
  slots) is started first and executes the queued runs of the first phase
  and these (the standard workload: 20 tokens 50 ms apart after 50 ms) while
  they are submitted; the same figures are reported, judged on failures only.

Each phase also reports the CPU milliseconds per accepted run of gateway,
state, Postgres, Redis, the runners and this load client (procstat.py,
/proc/<pid>/stat deltas over the phase) and the machine's 1-minute load
average (2 shared cores: latency figures only compare at a similar load).

The client is a lean asyncio protocol (one HTTP/1.1 keep-alive connection per
worker, the request bytes built once, the answer's status line and
Content-Length parsed in place), so it costs the stack's two cores as little
as it can. Only 127.0.0.1; every request is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from relay_devstack.bench import judge, report, stop_stack
from relay_devstack.harness import stack_data_dir
from relay_devstack.stack import Stack, StackConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchstats import dist, percentile
from interactive_load import Sim
from procstat import Meter

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
QUEUE_TARGETS = {"runs_per_s": ">= 1000", "latency_p99_ms": "<= 50", "failed": "== 0"}
DRAINING_TARGETS = {"failed": "== 0"}
REQUEST_TIMEOUT_S = 30.0
MEASURED = ("gateway", "state", "postgres", "redis", "runner-background", "client")


class KeepAlive(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; `exchange` sends a request, awaits its answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = self.buf[:end].decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n")[1:]:
            if line.startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if len(self.buf) < end + 4 + length:
            return
        self.buf = self.buf[end + 4 + length :]
        if not self.waiter.done():
            self.waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the gateway closed the connection"))

    async def exchange(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await self.waiter


def submit_request(url: str, key: str, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    return (
        f"POST /v1/runs HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def load(url: str, key: str, sim: Sim, runs: int, concurrency: int) -> dict[str, Any]:
    """`runs` submissions over `concurrency` connections; latencies, statuses, wall."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    todo = iter(range(runs))

    async def worker() -> None:
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        _, conn = await loop.create_connection(KeepAlive, host, port)
        try:
            for n in todo:
                request = submit_request(url, key, sim.message(n))
                started = time.perf_counter()
                try:
                    status = str(await conn.exchange(request))
                except (OSError, TimeoutError) as exc:
                    statuses[type(exc).__name__] += 1
                    return
                latencies.append(time.perf_counter() - started)
                statuses[status] += 1
        finally:
            if conn.transport is not None:
                conn.transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"latencies": latencies, "statuses": statuses, "wall": time.perf_counter() - started}


def roots(stack: Stack) -> dict[str, int]:
    found = {"client": os.getpid()}
    for name in MEASURED[:-1]:
        child = stack.child(name)
        if child is not None and child.alive():
            found[name] = child.pid
    return found


async def phase(stack: Stack, args: argparse.Namespace, name: str) -> dict[str, Any]:
    sim = Sim(50.0, 20, 50.0)
    load0 = os.getloadavg()[0]
    meter = Meter(roots(stack), own=frozenset({"client"}))
    got = await load(stack.gateway_url, stack.api_key, sim, args.runs, args.concurrency)
    cpu = meter.used()
    ok = got["statuses"].get("202", 0)
    failed = args.runs - ok
    targets = QUEUE_TARGETS if name.startswith("accept-queue") else DRAINING_TARGETS
    result: dict[str, Any] = {
        "scenario": name,
        "load": f"{args.runs} POST /v1/runs over {args.concurrency} keep-alive connections",
        "runs": args.runs,
        "failed": failed,
        "statuses": dict(got["statuses"]),
        "runs_per_s": round(ok / got["wall"], 1),
        "wall_s": round(got["wall"], 2),
        "latency_p50_ms": round(percentile(got["latencies"], 0.5) * 1000, 1),
        "latency_p99_ms": round(percentile(got["latencies"], 0.99) * 1000, 1),
        "latency": dist(got["latencies"]),
        "cpu_ms_per_run": {k: round(v * 1000 / max(ok, 1), 2) for k, v in sorted(cpu.items())},
        "machine_load_1m": [round(load0, 1), round(os.getloadavg()[0], 1)],
        "cpus": os.cpu_count(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "latency"}))
    return judge(result, targets)


async def measure(stack: Stack, args: argparse.Namespace) -> list[dict[str, Any]]:
    warm = argparse.Namespace(runs=min(200, args.runs), concurrency=args.concurrency)
    await load(stack.gateway_url, stack.api_key, Sim(50.0, 20, 50.0), warm.runs, warm.concurrency)
    results = [await phase(stack, args, f"accept-queue@{args.runs}")]
    await asyncio.to_thread(stack.start_service, "runner-background")
    results.append(await phase(stack, args, f"accept-draining@{args.runs}"))
    return results


def start(args: argparse.Namespace) -> Stack:
    overrides = {
        "gateway": {"RELAY_MAX_CONCURRENT_RUNS": "1000000", "RELAY_RATE_LIMIT_PER_MIN": "10000000"},
        "runner-background": {"RELAY_RUNNER_CONCURRENCY": str(args.drain_concurrency)},
    }
    stack = Stack(StackConfig.for_tests(stack_data_dir("relay-bench-accept-"), overrides))
    stack.start()
    stack.stop_service("runner-background")
    return stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--drain-concurrency", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder (its logs)")
    parser.add_argument("--no-write", action="store_true", help="leave bench/results.json alone")
    args = parser.parse_args()
    stack = start(args)
    try:
        results = asyncio.run(measure(stack, args))
    finally:
        stop_stack(stack, keep=args.keep)
    report(results, script="accept", results_file=RESULTS, write=not args.no_write)


if __name__ == "__main__":
    main()
