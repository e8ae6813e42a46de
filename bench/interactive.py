"""Interactive-runs benchmark: the time-to-first-token Relay adds to the model's.

    .venv/bin/python bench/interactive.py [--scenario all|burst|steady|sequential]
        [--runs 200] [--rounds 3] [--runners 2] [--steady-in-flight 200] [--no-write]

About four to five minutes on this machine with the defaults (`--help` lists the
knobs).

The whole stack runs as processes on free ports (the `relay_devstack` harness:
embedded Redis and Postgres, state, modelsim, the runners, gateway, events),
with the interactive pool opened wide (`RELAY_RUNNER_CONCURRENCY` 250 per
runner, `--runners` runner processes) and the gateway's per-key limits out of
the way. It is warmed up first (a few runs, then a burst of 50), so process
start-up, imports and cold pools are not measured. Every scenario times the
same requests three ways:

- `relay`: `POST /v1/chat/stream` on the gateway, time to the first `token`
  event; the stream is read to `done`, so every run ends normally;
- `sdk`: straight to modelsim through the real `anthropic` SDK (one
  `AsyncAnthropic`, as a runner holds one), time to the first text delta:
  the model's TTFT as a client of the model sees it, THE BASELINE;
- `raw` (burst, sequential): the same requests to modelsim through the lean
  client below, time to the first `content_block_delta`: the model's TTFT
  without the SDK's client-side CPU, reported beside for an honest reading
  (under a burst the SDK alone adds a few hundred ms on this machine).

Relay's ADDED time-to-first-token of a request = its relay TTFT minus the
median `sdk` TTFT of the same scenario; each scenario reports its p50/p99
(target: p99 < 50 ms) and the distributions of both sides. The scenarios:

- `steady` (the issue's "200 concurrent runs": 200 in flight): requests
  arriving at a constant rate (open loop), each streaming long enough (100
  tokens 200 ms apart) that about `--steady-in-flight` runs are open at
  once; measured for `--steady-measure-s` (60 s, ~600 requests, so the p99
  is not one unlucky request) after a ramp. What a chat product with that
  many conversations streaming sees.
- `burst` (the stress reading: all 200 started at the same instant):
  `--runs` requests started in the same event-loop turn, `--rounds` times,
  each after the stack went idle; sim: TTFT 200 ms, 20 tokens 5 ms apart.
  On this 2-core machine it is CPU-bound: every process of the stack, the
  model and the clients share two cores, so 200 runs' start-up work
  (~20 ms of CPU each, `cpu_ms_per_run`) queues for ~2 s of CPU.
- `sequential`: one request at a time: the floor, with nothing else going on.

Where the added time goes, per request, from wall-clock times that need no
instrumentation in the services (a Redis stream id is Redis' clock in ms; the
client and Redis share this machine's clock):

- `gateway`: request start -> the run's entry on `relay:queue:interactive`
  (auth, rate limit, kill switch, admission, state's create_run);
- `pickup`: queue entry -> the run's `start` event (XREADGROUP wake-up,
  dispatch, state's claim, the lease, the fenced XADD);
- `model`: `start` -> the first `token` XADD (agent set-up, the SDK call, the
  model's TTFT); minus the baseline median, "runner part of model";
- `deliver`: the first `token` XADD -> its receipt by the client (the
  gateway's hub wake-up and fan-out, the SSE write, the client);
- `headers`: request start -> response headers (`gateway` plus the hub
  subscription; not on the first token's critical path, since the
  subscription replays the stream from its start).

Also recorded, to see what the time is made of: CPU milliseconds per run of
every process (psutil, over the relay phase), state's own server time per
internal route (its latency histogram on /metrics, before and after), and
the machine's 1-minute load average: this 2-core machine is shared, and with
the clients, the model and the whole stack on two cores, CPU queueing is part
of every figure.

The relay and raw clients are a minimal asyncio protocol (one connection per
request, the request written at once, chunked body and SSE parsed in place),
not httpx: a Python HTTP client stack costs enough CPU on two cores to delay
the very events it times (the `sdk` vs `raw` baselines show how much). Only
127.0.0.1; every request and wait is bounded; the stack is stopped at the end.

Results, the same way as every bench script (`relay_devstack.bench.report`):
a table of the figures and each scenario's distributions, then the summary
table (each target and whether it was met); one object per scenario
(`interactive-burst@200`, `interactive-steady@200`, `interactive-sequential`)
merged by name into bench/results.json (unless `--no-write`), or handed to
`make bench BENCH=interactive`, which merges them. Targets: `TARGETS` (added
TTFT p99 < 50 ms, and no failed request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx
import psutil
from redis.asyncio import Redis

from relay_core import keys
from relay_devstack.bench import judge, report
from relay_devstack.harness import stack_data_dir
from relay_devstack.stack import Stack, StackConfig

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
TARGETS = {"added_ttft_p99_ms": "< 50", "failed": "== 0"}  # relay_devstack.bench.judge
MODEL = "sim-default"
SIM_KEY = "sim-key"
REQUEST_TIMEOUT_S = 60.0
SSE_SPLIT = re.compile(rb"\r?\n\r?\n")
SEGMENTS = ("headers", "gateway", "pickup", "model", "deliver")
CLIENT = "relay and raw: asyncio HTTP/1.1 protocol; sdk: anthropic.AsyncAnthropic"


# ---------------------------------------------------------------- measurements


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))


def dist(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of values in seconds, as milliseconds."""
    return {f"{name}_ms": round(percentile(values, q) * 1000, 1) for name, q in QUANTILES}


def spread(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of plain values (counts)."""
    return {name: percentile(values, q) for name, q in QUANTILES}


@dataclass
class Timing:
    """One request, wall clock (time.time()) except `ttft` (perf_counter based)."""

    t0: float = 0.0
    p0: float = 0.0
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    t_head: float = 0.0
    ttft: float | None = None
    first: dict[str, tuple[str | None, float]] = field(default_factory=dict)  # type -> (id, t)
    ended: bool = False
    error: str = ""


# ------------------------------------------------------------- the lean client


class StreamClient(asyncio.Protocol):
    """One HTTP/1.1 request on its own connection; times the first `mark` SSE event.

    Reads the response to its `end` event (or the connection's close), so a
    relay run finishes normally instead of being cancelled by a disconnect.
    """

    def __init__(self, request: bytes, timing: Timing, *, mark: str, end: str) -> None:
        self.request = request
        self.timing = timing
        self.mark = mark
        self.end = end
        self.head = b""
        self.chunked = False
        self.buf = b""
        self.body = b""
        self.transport: asyncio.Transport | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now, pnow = time.time(), time.perf_counter()
        if not self.timing.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._parse_head(self.head[:end], now)
            data = self.head[end + 4 :]
        if self.chunked:
            self.buf += data
            self._dechunk()
        else:
            self.body += data
        self._messages(now, pnow)

    def _parse_head(self, head: bytes, now: float) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.timing.status = int(lines[0][9:12])
        self.timing.t_head = now
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.timing.headers[name.strip().lower()] = value.strip()
        self.chunked = self.timing.headers.get("transfer-encoding", "") == "chunked"

    def _dechunk(self) -> None:
        pos, buf = 0, self.buf
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0 or len(buf) < eol + 2 + size + 2:
                break
            self.body += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2
        self.buf = buf[pos:]

    def _messages(self, now: float, pnow: float) -> None:
        if self.timing.status != 200:
            return
        *messages, self.body = SSE_SPLIT.split(self.body)
        for msg in messages:
            kind, ident = "", None
            for line in msg.split(b"\n"):
                line = line.rstrip(b"\r")
                if line.startswith(b"event:"):
                    kind = line[6:].strip().decode()
                elif line.startswith(b"id:"):
                    ident = line[3:].strip().decode()
            if not kind:
                continue  # a keep-alive comment, or data without a type
            self.timing.first.setdefault(kind, (ident, now))
            if kind == self.mark and self.timing.ttft is None:
                self.timing.ttft = pnow - self.timing.p0
            if kind == self.end:
                self.timing.ended = True
                self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.finished.done():
            self.finished.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timing.status != 200 and not self.timing.error:
            self.timing.error = (self.buf + self.body)[-300:].decode(errors="replace")
        if not self.finished.done():
            self.finished.set_result(None)


def http_post(url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    data = json.dumps(body).encode()
    host = urlsplit(url).netloc
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(data)}\r\n"
        f"Connection: close\r\n{head}\r\n"
    ).encode() + data


async def lean_request(url: str, request: bytes, *, mark: str, end: str) -> Timing:
    timing = Timing(t0=time.time(), p0=time.perf_counter())
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            _, proto = await loop.create_connection(
                lambda: StreamClient(request, timing, mark=mark, end=end),
                host,
                port,
            )
            await proto.finished
    except (OSError, TimeoutError) as exc:
        timing.error = f"{type(exc).__name__}: {exc}"
    if timing.status and timing.status != 200 and not timing.error:
        timing.error = f"HTTP {timing.status}"
    return timing


# ----------------------------------------------------------- the three clients


@dataclass(frozen=True)
class Sim:
    """What modelsim is told to do for every request (the `#sim` directive)."""

    ttft_ms: float
    tokens: int
    token_delay_ms: float

    def message(self, n: int) -> str:
        directive = {
            "ttft_ms": self.ttft_ms,
            "tokens": self.tokens,
            "token_delay_ms": self.token_delay_ms,
        }
        return f"benchmark turn {n}: say something\n#sim {json.dumps(directive)}"


Request = Callable[[], Coroutine[Any, Any, Timing]]


def relay_request(stack: Stack, key: str, text: str) -> Request:
    request = http_post(
        stack.gateway_url, "/v1/chat/stream", {"message": text}, {"Authorization": f"Bearer {key}"}
    )
    return lambda: lean_request(stack.gateway_url, request, mark="token", end="done")


def raw_model_request(stack: Stack, text: str) -> Request:
    body = {
        "model": MODEL,
        "max_tokens": 1024,
        "stream": True,
        "messages": [{"role": "user", "content": text}],
    }
    headers = {"x-api-key": SIM_KEY, "anthropic-version": "2023-06-01"}
    request = http_post(stack.modelsim_url, "/v1/messages", body, headers)
    return lambda: lean_request(
        stack.modelsim_url, request, mark="content_block_delta", end="message_stop"
    )


def sdk_request(client: anthropic.AsyncAnthropic, text: str) -> Request:
    async def one() -> Timing:
        timing = Timing(t0=time.time(), p0=time.perf_counter())
        try:
            async with (
                asyncio.timeout(REQUEST_TIMEOUT_S),
                client.messages.stream(
                    model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": text}]
                ) as stream,
            ):
                async for event in stream:
                    if (
                        timing.ttft is None
                        and event.type == "content_block_delta"
                        and event.delta.type == "text_delta"
                    ):
                        timing.ttft = time.perf_counter() - timing.p0
            timing.status, timing.ended = 200, True
        except (anthropic.APIError, TimeoutError) as exc:
            timing.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        return timing

    return one


# ---------------------------------------------------------------- load shapes


async def burst(requests: list[Request]) -> list[Timing]:
    """Start every request at once (one event-loop turn) and wait for all."""
    return list(await asyncio.gather(*(make() for make in requests)))


async def one_by_one(requests: list[Request]) -> list[Timing]:
    return [await make() for make in requests]


async def paced(requests: list[Request], rate: float) -> tuple[list[Timing], list[int]]:
    """Start the requests at `rate` per second (open loop: a slow answer does not
    slow the arrivals); also returns how many were in flight as each started."""
    tasks: list[asyncio.Task[Timing]] = []
    in_flight: list[int] = []
    started = time.perf_counter()
    for n, make in enumerate(requests):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        in_flight.append(sum(1 for t in tasks if not t.done()))
        tasks.append(asyncio.create_task(make()))
    return list(await asyncio.gather(*tasks)), in_flight


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


# -------------------------------------------------------------- the breakdown


def id_ms(stream_id: str | None) -> float | None:
    if not stream_id:
        return None
    return int(stream_id.split("-")[0]) / 1000


async def enqueue_times(redis_url: str) -> dict[str, float]:
    """run id -> when its entry was added to the interactive queue (Redis clock)."""
    rc = Redis.from_url(redis_url, decode_responses=True)
    try:
        entries: Any = await rc.xrange(keys.queue("interactive"))
    finally:
        await rc.aclose()
    return {f["run_id"]: int(eid.split("-")[0]) / 1000 for eid, f in entries if "run_id" in f}


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


# --------------------------------------------------- state's own server time

METRIC_LINE = re.compile(r"^(relay_state_request_duration_seconds_(?:sum|count))\{(.*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


async def state_route_totals(stack: Stack) -> dict[str, tuple[float, float]]:
    """route -> (seconds, requests) so far, from state's latency histogram."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(f"{stack.state_url}/metrics")).text
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


# ------------------------------------------------------------------ the stack

SERVICES = ["gateway", "state", "modelsim", "redis", "postgres", "events"]


def start_stack(args: argparse.Namespace) -> Stack:
    runner_env = {"RELAY_RUNNER_CONCURRENCY": str(args.concurrency)}
    overrides = {
        "runner-interactive": runner_env,
        "gateway": {
            "RELAY_MAX_CONCURRENT_RUNS": str(max(1000, 5 * args.runs)),
            "RELAY_RATE_LIMIT_PER_MIN": "100000",
            "RELAY_INTERACTIVE_QUEUE_TIMEOUT_S": "30",
        },
    }
    if args.log_level:
        overrides["all"] = {"RELAY_LOG_LEVEL": args.log_level}
    stack = Stack(StackConfig.for_tests(stack_data_dir("relay-bench-interactive-"), overrides))
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
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=2.0) as http:
        while True:
            health = (await http.get("/healthz")).json()
            if health.get("interactive_in_flight") == 0 and health.get("streams_open") == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not go idle within {timeout_s}s: {health}")
            await asyncio.sleep(0.2)


def failures(timings: list[Timing]) -> list[str]:
    return [t.error or "no first token" for t in timings if t.ttft is None or not t.ended]


# ------------------------------------------------------------------ a phase


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


async def relay_phase(
    stack: Stack, load: Awaitable[tuple[list[Timing], list[int]]], *, skip: int = 0
) -> Phase:
    """Run `load` (relay requests) on an idle stack and measure it; the first
    `skip` requests (a ramp) are left out of the figures but not of the CPU."""
    await wait_idle(stack)
    meter = CpuMeter(stack, [*SERVICES, *runner_names(stack)])
    routes0 = await state_route_totals(stack)
    load_1m = os.getloadavg()[0]
    started, t0 = time.monotonic(), time.time()
    relay, in_flight = await load
    wall = time.monotonic() - started
    cpu = meter.used()
    routes = state_route_means(routes0, await state_route_totals(stack))
    enqueued = await enqueue_times(stack.redis_url)
    kept = relay[skip:]
    await wait_idle(stack)
    phase = Phase(kept, breakdown(kept, enqueued), cpu, routes, len(relay), wall, load_1m)
    phase.in_flight = in_flight[skip:]
    phase.load_1m = max(load_1m, os.getloadavg()[0])
    answered = {t.headers.get("relay-run-id") for t in relay}
    phase.orphans = sum(1 for rid, at in enqueued.items() if at >= t0 and rid not in answered)
    return phase


async def no_counts(timings: Awaitable[list[Timing]]) -> tuple[list[Timing], list[int]]:
    return await timings, []


# ---------------------------------------------------------------- scenarios


@dataclass
class Bench:
    args: argparse.Namespace
    stack: Stack
    key: str
    sdk: anthropic.AsyncAnthropic
    turn: int = 0

    def texts(self, sim: Sim, n: int) -> list[str]:
        """`n` distinct messages (no two requests are the same turn)."""
        self.turn += n
        return [sim.message(self.turn - n + i) for i in range(n)]

    def relay(self, texts: list[str]) -> list[Request]:
        return [relay_request(self.stack, self.key, t) for t in texts]

    def model_sdk(self, texts: list[str]) -> list[Request]:
        return [sdk_request(self.sdk, t) for t in texts]

    def model_raw(self, texts: list[str]) -> list[Request]:
        return [raw_model_request(self.stack, t) for t in texts]


async def warm_up(bench: Bench, sim: Sim) -> None:
    """Process start-up, imports, pools and caches out of the measured figures."""
    for text in bench.texts(sim, bench.args.warmup):
        if bad := failures([await bench.relay([text])[0](), await bench.model_sdk([text])[0]()]):
            raise RuntimeError(f"warm-up request failed: {bad}")
    texts = bench.texts(sim, bench.args.warmup_burst)
    await burst(bench.model_sdk(texts))
    if bad := failures(await burst(bench.relay(texts))):
        raise RuntimeError(f"warm-up burst failed: {bad[:5]}")


async def scenario_burst(bench: Bench, sim: Sim) -> list[Phase]:
    """`--runs` requests started at once, `--rounds` times; baselines first."""
    phases = []
    for _ in range(bench.args.rounds):
        texts = bench.texts(sim, bench.args.runs)
        sdk = await burst(bench.model_sdk(texts))
        raw = await burst(bench.model_raw(texts))
        phase = await relay_phase(bench.stack, no_counts(burst(bench.relay(texts))))
        phase.sdk, phase.raw = sdk, raw
        phases.append(phase)
    return phases


async def scenario_sequential(bench: Bench, sim: Sim) -> list[Phase]:
    """One request at a time: Relay's added TTFT with nothing else going on."""
    texts = bench.texts(sim, bench.args.sequential)
    sdk = await one_by_one(bench.model_sdk(texts))
    raw = await one_by_one(bench.model_raw(texts))
    phase = await relay_phase(bench.stack, no_counts(one_by_one(bench.relay(texts))))
    phase.sdk, phase.raw = sdk, raw
    return [phase]


async def scenario_steady(bench: Bench, sim: Sim) -> list[Phase]:
    """Runs arriving at a constant rate, each streaming long enough that about
    `--steady-in-flight` are open at once; a ramp, then the measured arrivals."""
    args = bench.args
    rate = args.steady_in_flight / run_seconds(sim)
    ramp = round(rate * run_seconds(sim) * 1.1)
    texts = bench.texts(sim, ramp + round(rate * args.steady_measure_s))
    sdk, _ = await paced(bench.model_sdk(texts), rate)
    phase = await relay_phase(bench.stack, paced(bench.relay(texts), rate), skip=ramp)
    phase.sdk = sdk[ramp:]
    return [phase]


def run_seconds(sim: Sim) -> float:
    return (sim.ttft_ms + sim.tokens * sim.token_delay_ms) / 1000


# ----------------------------------------------------------------- reporting


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
            "added_ttft_p99_ms", "added_ttft_vs_raw_p99_ms", "machine_load_1m", "met"]  # fmt: skip
    rows = [[str(r.get(c, "")) for c in cols] for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    for r in results:
        print(f"\n{r['scenario']}: {r['load']}")
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


# ---------------------------------------------------------------------- main


async def measure(args: argparse.Namespace, stack: Stack) -> list[dict[str, Any]]:
    sim = Sim(args.ttft_ms, args.tokens, args.token_delay_ms)
    steady = Sim(args.ttft_ms, args.steady_tokens, args.steady_token_delay_ms)
    sdk = anthropic.AsyncAnthropic(
        base_url=stack.modelsim_url, api_key=SIM_KEY, max_retries=0, timeout=REQUEST_TIMEOUT_S
    )
    bench = Bench(args, stack, stack.api_key, sdk)
    wanted = ["burst", "steady", "sequential"] if args.scenario == "all" else [args.scenario]
    results = []
    try:
        await warm_up(bench, sim)
        if "burst" in wanted:
            load = f"{args.runs} requests started at once, {args.rounds} rounds"
            phases = await scenario_burst(bench, sim)
            results.append(summarize(f"interactive-burst@{args.runs}", load, phases, sim, args))
        if "steady" in wanted:
            rate = args.steady_in_flight / run_seconds(steady)
            load = (f"{rate:.1f} requests/s (open loop), each streaming {run_seconds(steady):g} s: "
                    f"about {args.steady_in_flight} in flight; {args.steady_measure_s:g} s "
                    "measured after a ramp")  # fmt: skip
            phases = await scenario_steady(bench, steady)
            name = f"interactive-steady@{args.steady_in_flight}"
            results.append(summarize(name, load, phases, steady, args))
        if "sequential" in wanted:
            load = f"{args.sequential} requests one after another"
            phases = await scenario_sequential(bench, sim)
            results.append(summarize("interactive-sequential", load, phases, sim, args))
    finally:
        await sdk.close()
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--scenario", default="all", choices=["all", "burst", "steady", "sequential"])
    add("--runs", type=int, default=200, help="burst: requests started at once")
    add("--rounds", type=int, default=3, help="burst: how many bursts")
    add("--runners", type=int, default=2, help="interactive runner processes")
    add("--concurrency", type=int, default=250, help="RELAY_RUNNER_CONCURRENCY of each")
    add("--ttft-ms", type=float, default=200.0)
    add("--tokens", type=int, default=20)
    add("--token-delay-ms", type=float, default=5.0)
    add("--steady-in-flight", type=int, default=200)
    add("--steady-tokens", type=int, default=100)
    add("--steady-token-delay-ms", type=float, default=200.0)
    add("--steady-measure-s", type=float, default=60.0)
    add("--sequential", type=int, default=30, help="sequential: how many requests")
    add("--warmup", type=int, default=5, help="sequential warm-up requests")
    add("--warmup-burst", type=int, default=50, help="then one warm-up burst of these")
    add("--log-level", default="", help="RELAY_LOG_LEVEL of every service (default: theirs)")
    add("--keep", action="store_true", help="keep the stack's folder (its logs)")
    add("--no-write", action="store_true", help="leave bench/results.json alone")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    stack = start_stack(args)
    try:
        results = asyncio.run(measure(args, stack))
    finally:
        stack.stop()
        if args.keep:
            print(f"stack folder: {stack.config.data_dir}")
        else:
            shutil.rmtree(stack.config.data_dir, ignore_errors=True)
    print_table(results)
    report(results, script="interactive", results_file=RESULTS, write=not args.no_write)


if __name__ == "__main__":
    main()
