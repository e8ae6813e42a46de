"""The child-process roles of fanout.py and what they measure.

fanout.py spawns itself (`python bench/fanout.py ROLE ...`, see
fanout_stack.`_spawn`) in each role: the publisher and the subscribers get a
process and an event loop of their own, apart from the orchestrator's
sampling, and the CPU read is that of the measured process alone
(relay-events in `http`, the `engine-subscribe` process in `engine`):

- `publish`: XADD `--rate` token events/s round robin over the runs, each
  carrying its publish time `t` (then, in the last phase, a `done` to each);
- `drive`: one SSE client process, `--conns` streams through `SseClient`, a
  lean asyncio HTTP/1.1 protocol (not httpx: a Python HTTP client stack costs
  about as much CPU per event as the server, and on this 2-core machine the
  clients would otherwise measure themselves);
- `engine-subscribe`: the same subscribers on an in-process
  `relay_core.fanout.EventHub`, no HTTP.

`drive` and `engine-subscribe` write the same files: `OUT.ready` once every
stream is open, then `OUT` (counts) and `OUT.lat` ((publish time, latency)
pairs as doubles, read back by `read_latencies`) when every stream has ended.
`wake_latency` is the `wake` scenario's measurement, run in the orchestrator.

Not a bench script (no `main()`): bench/fanout.py imports it as a sibling.
"""

# ruff: noqa: ASYNC110, ASYNC240
# (its poll loops and file reads are not on a measured path)

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchstats import percentile
from fanout_report import WAKE_TARGETS

from relay_core import keys
from relay_core.fanout import EventHub
from relay_core.gctune import tune_gc
from relay_core.redis import create_redis
from relay_devstack.bench import judge

EVENTS_CLIENT_NAME = "relay-events"
T_FIELD = re.compile(rb'"t":([0-9.]+)')


# ------------------------------------------------------------------- publisher


async def publish(
    redis_url: str, run_ids: list[str], rate: float, duration_s: float, *, done: bool
) -> dict[str, float]:
    """XADD `rate` token events/s round robin over the runs (then `done` to each)."""
    rc = create_redis(redis_url)
    sent = 0
    started, t0 = time.monotonic(), time.time()
    while (elapsed := time.monotonic() - started) < duration_s:
        due = int(elapsed * rate) - sent
        if due > 0:
            async with rc.pipeline(transaction=False) as pipe:
                t = time.time()
                data = json.dumps({"text": "x", "step": 0, "t": t}, separators=(",", ":"))
                for n in range(sent, sent + due):
                    key = keys.events(run_ids[n % len(run_ids)])
                    pipe.xadd(
                        key, {"event": "token", "data": data}, maxlen=10_000, approximate=True
                    )
                await pipe.execute()
            sent += due
        await asyncio.sleep(0.005)
    elapsed, t1 = time.monotonic() - started, time.time()
    if done:
        async with rc.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                data = '{"status":"succeeded","cost_usd":0}'
                pipe.xadd(keys.events(run_id), {"event": "done", "data": data})
            await pipe.execute()
    await rc.aclose()
    return {"published": sent, "elapsed_s": elapsed, "rate": sent / elapsed, "t0": t0, "t1": t1}


# ------------------------------------------------------------- the SSE client


class SseClient(asyncio.Protocol):
    """A minimal HTTP/1.1 SSE client: one GET, chunked body, SSE messages."""

    def __init__(self, request: bytes, stats: DriverStats) -> None:
        self.request = request
        self.stats = stats
        self.head = b""
        self.status = 0
        self.buf = b""
        self.sse = b""
        self.done = False
        self.retired = False  # a refused attempt, replaced by a retry
        self.connected: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head[9:12])
            data = self.head[end + 4 :]
            if not self.connected.done():
                self.connected.set_result(self.status)
        self.buf += data
        self._chunks()

    def _chunks(self) -> None:
        pos = 0
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol], 16)
            if size == 0:
                break
            if len(buf) < eol + 2 + size + 2:
                break
            self.sse += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2
        self.buf = buf[pos:]
        if self.sse:
            self._messages()

    def _messages(self) -> None:
        *messages, self.sse = self.sse.split(b"\r\n\r\n")
        now = time.time()
        for msg in messages:
            if msg.startswith(b":"):
                continue  # keep-alive comment
            m = T_FIELD.search(msg)
            if m is not None:
                t = float(m.group(1))
                self.stats.samples.extend((t, now - t))
            elif b"event: done" in msg:
                self.done = True
                self.stats.done += 1
            self.stats.received += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_result(self.status or -1)
        if self.retired:
            return
        self.stats.closed += 1
        if not self.done:
            self.stats.cut += 1


@dataclass
class DriverStats:
    samples: array[float]  # (publish time, latency) pairs
    received: int = 0
    done: int = 0
    closed: int = 0
    cut: int = 0

    def save(self, out: Path, failures: dict[int, int]) -> None:
        """The latency samples beside `out`, the counts in it (read by the orchestrator)."""
        out.with_suffix(".lat").write_bytes(self.samples.tobytes())
        counts = {"received": self.received, "done": self.done, "closed": self.closed}
        out.write_text(json.dumps({**counts, "cut": self.cut, "failures": failures}))


async def drive(args: argparse.Namespace) -> None:
    """One client process: open `--conns` streams, report ready, run until all end."""
    run_ids = json.loads(Path(args.runs_file).read_text())
    stats = DriverStats(samples=array("d"))
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(100)
    failures: dict[int, int] = {}
    retries: dict[int, int] = {}

    async def open_one(n: int) -> None:
        run_id = run_ids[(args.offset + n) % len(run_ids)]
        request = (
            f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {args.key}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        for attempt in range(5):  # like EventSource: a refused stream is retried
            async with sem:
                transport, proto = await loop.create_connection(
                    lambda: SseClient(request, stats), "127.0.0.1", args.port
                )
                status = await asyncio.wait_for(proto.connected, 60)
            if status == 200:
                return
            proto.retired = True
            transport.close()
            retries[status] = retries.get(status, 0) + 1
            await asyncio.sleep(0.5 * (attempt + 1))
        failures[status] = failures.get(status, 0) + 1

    await asyncio.gather(*(open_one(n) for n in range(args.conns)), return_exceptions=False)
    out = Path(args.out)
    ready = {"failures": failures, "retries": retries}
    (out.parent / (out.name + ".ready")).write_text(json.dumps(ready))
    deadline = time.monotonic() + args.max_s
    while stats.closed < args.conns and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    stats.save(out, failures)


# ------------------------------------------------------------ engine, in-process


@dataclass
class _Run:
    status: str = "running"
    conversation_id: str = "conv_bench"
    cost_usd: float = 0.0


async def engine_subscribe(args: argparse.Namespace) -> None:
    """Subscribers on an EventHub in this process (no HTTP), same output as `drive`."""
    run_ids = json.loads(Path(args.runs_file).read_text())
    tune_gc()  # as relay-events does
    hub = EventHub(args.redis_url, client_name=EVENTS_CLIENT_NAME)
    await hub.start()
    stats = DriverStats(samples=array("d"))

    async def consume(n: int) -> None:
        sub = await hub.subscribe(run_ids[n % len(run_ids)], run=_Run())
        ready.append(1)
        samples = stats.samples
        try:
            while True:
                batch = await sub.next_batch()
                now = time.time()
                for event in batch:
                    stats.received += 1
                    if event.type == "done":
                        stats.done += 1
                    else:
                        t = event.data["t"]
                        samples.extend((t, now - t))
        except StopAsyncIteration:
            pass
        except Exception:
            stats.cut += 1
        finally:
            sub.close()
            stats.closed += 1

    ready: list[int] = []
    tasks = [asyncio.create_task(consume(n)) for n in range(args.conns)]
    while len(ready) < args.conns:
        await asyncio.sleep(0.05)
    out = Path(args.out)
    (out.parent / (out.name + ".ready")).write_text(json.dumps({"failures": {}}))
    await asyncio.wait(tasks, timeout=args.max_s)
    await hub.stop()
    stats.save(out, {})


async def wake_latency(redis_url: str, followed: list[str], samples: int = 200) -> dict[str, Any]:
    """First-event latency of new runs while `followed` runs keep the reader busy."""
    hub = EventHub(redis_url, client_name="relay-bench-wake")
    await hub.start()
    rc = create_redis(redis_url)
    try:
        subs = [await hub.subscribe(run_id, run=_Run()) for run_id in followed]
        await asyncio.sleep(0.2)
        lat: list[float] = []
        for _ in range(samples):
            run_id = f"run_wake_{uuid.uuid4().hex}"
            sub = await hub.subscribe(run_id, run=_Run())
            t = time.time()
            await rc.xadd(
                keys.events(run_id),
                {"event": "status", "data": json.dumps({"message": "hi", "t": t})},
            )
            event = await asyncio.wait_for(sub.__anext__(), 10)
            lat.append(time.time() - event.data["t"])
            sub.close()
            await rc.delete(keys.events(run_id))
        for s in subs:
            s.close()
    finally:
        await hub.stop()
        await rc.aclose()
    result = {
        "scenario": "wake",
        "followed_runs": len(followed),
        "samples": samples,
        "first_event_p50_ms": round(percentile(lat, 0.5) * 1000, 2),
        "first_event_p99_ms": round(percentile(lat, 0.99) * 1000, 2),
    }
    return judge(result, WAKE_TARGETS)


# ------------------------------------------------------- what the roles wrote


def read_latencies(path: Path) -> array[float]:
    data = array("d")
    data.frombytes(path.read_bytes())
    return data
