"""Submit throughput: `POST /v1/runs` as fast as `concurrency` clients can send them.

Not a bench script (no `main()`): bench/interactive.py runs it as its
`submit` scenario, on one Redis or on a Redis Cluster (`--redis cluster`),
so the two compare. Each client is a keep-alive httpx connection sending the
next request as soon as the last is answered (closed loop); every answer must
be 202. What a submission costs Relay: the gateway's auth (cached), rate limit,
admission round trip, state's transaction, the enqueue (MULTI on the run's
partition, then the doorbell). The runs are background runs of one short
answer each; the stack's background runner drains them meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
from benchstats import percentile

from relay_devstack.bench import judge
from relay_devstack.stack import Stack

# Throughput is a figure to compare (single vs cluster), not a target: this
# machine is shared and its load decides it.
SUBMIT_TARGETS = {"failed": "== 0"}


async def submit_throughput(
    stack: Stack, key: str, *, runs: int, concurrency: int, suffix: str = ""
) -> dict[str, Any]:
    body = {"message": 'hi\n#sim {"tokens": 1}'}
    latencies: list[float] = []
    failed: list[int] = []
    next_run = iter(range(runs))

    async def client(http: httpx.AsyncClient) -> None:
        for _ in next_run:
            started = time.perf_counter()
            resp = await http.post("/v1/runs", json=body)
            latencies.append(time.perf_counter() - started)
            if resp.status_code != 202:
                failed.append(resp.status_code)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url,
        headers={"Authorization": f"Bearer {key}"},
        limits=limits,
        timeout=30.0,
    ) as http:
        await http.post("/v1/runs", json=body)  # a connection and a cached key
        load_1m = os.getloadavg()[0]
        started = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.monotonic() - started
    result = {
        "scenario": f"submit{suffix}@{concurrency}",
        "load": f"{runs} POST /v1/runs from {concurrency} keep-alive clients, closed loop",
        "samples": len(latencies),
        "failed": len(failed),
        "submits_per_s": round(len(latencies) / wall, 1),
        "latency_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "machine_load_1m": round(max(load_1m, os.getloadavg()[0]), 1),
    }
    return judge(result, SUBMIT_TARGETS)
