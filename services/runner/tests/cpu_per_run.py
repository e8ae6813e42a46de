"""CPU milliseconds per run of ONE interactive runner process (a measuring tool, not a test).

    .venv/bin/python services/runner/tests/cpu_per_run.py [--runs 50] [--tokens 100]
        [--token-delay-ms 200] [--ttft-ms 200] [--spread-s 5] [--rounds 2] [--trace]

Why a tool of its own: bench/interactive.py measures the whole stack under a
client load; this isolates the runner. The stack (embedded Redis and
Postgres, state, modelsim, gateway, events, one runner per pool) starts on
free ports (`relay_devstack`), with the interactive runner opened to 250
slots. Runs are created straight through state's internal API (so the
gateway does no work), `--runs` of them per round, their arrivals spread
evenly over `--spread-s` (0: all at once, a burst), each streaming
`--tokens` tokens `--token-delay-ms` apart after `--ttft-ms` (modelsim's
`#sim` directive). A round ends when state reports every run terminal; its
figure is the runner process' user+system CPU time over the round divided by
the runs (and the same less the idle runner's CPU over as long). Two warm-up
batches come first (imports, pools, connections), so they are not counted.

`--trace` turns tracing on in every service (sampled 100%), exporting over
OTLP/HTTP to a receiver in this process that accepts and discards what it
gets: tracing on vs off is this tool run twice, with and without it. State's
CPU per run is printed too (it serves a traced request per claim, checkpoint
and finish).

The runner's batching counters (`relay_runner_event_writes_total` /
`relay_runner_event_write_calls_total`) are printed too.

Before/after a change of the runner: run it once on each tree. An older
runner can be measured from this tree by putting its source first on the
path (child processes inherit it):

    git archive <commit> services/runner/src | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/services/runner/src .venv/bin/python services/runner/tests/cpu_per_run.py

Figures are noisy on a shared 2-core machine: compare runs made within the
same few minutes, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
import uuid

import httpx
import psutil

from relay_core.state_api import CreateRunIn
from relay_core.state_client import StateClient, StateUnavailable
from relay_devstack.harness import start_test_stack
from relay_devstack.otlpsink import discarding_receiver
from relay_devstack.stack import Stack

RUNNER = "runner-interactive"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ROUND_TIMEOUT_S = 300.0


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def message(tokens: int, token_delay_ms: float, ttft_ms: float) -> str:
    sim = {"tokens": tokens, "token_delay_ms": token_delay_ms, "ttft_ms": ttft_ms}
    return f"say something\n#sim {json.dumps(sim)}"


async def create(state: StateClient, text: str, delay_s: float) -> str:
    await asyncio.sleep(delay_s)
    req = CreateRunIn(
        user_id=f"cpu-{uuid.uuid4().hex[:8]}",
        message=text,
        model="sim-default",
        kind="interactive",
        idempotency_key=uuid.uuid4().hex,  # a retried create is the same run
    )
    for _ in range(5):
        try:
            run, _ = await state.create_run(req)
            return run.run_id
        except StateUnavailable:
            await asyncio.sleep(0.5)
    run, _ = await state.create_run(req)
    return run.run_id


async def batch(state: StateClient, runs: int, text: str, spread_s: float) -> float:
    """Create the runs, wait until every one is terminal; the wall time."""
    started = time.monotonic()
    ids = await asyncio.gather(*[create(state, text, spread_s * i / runs) for i in range(runs)])
    while time.monotonic() - started < ROUND_TIMEOUT_S:
        statuses = await state.run_statuses(ids)
        if len(statuses) == len(ids) and set(statuses.values()) <= TERMINAL:
            others = [s for s in statuses.values() if s != "succeeded"]
            if others:
                out(f"  not succeeded: {others}")
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise TimeoutError(f"the runs did not finish within {ROUND_TIMEOUT_S} s")


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def counters(stack: Stack) -> dict[str, float]:
    names = {
        "relay_runner_event_writes_total": "writes",
        "relay_runner_event_write_calls_total": "calls",
    }
    found: dict[str, float] = {}
    for line in httpx.get(stack.url(RUNNER) + "/metrics").text.splitlines():
        name = line.split("{", 1)[0]
        if name in names and 'pool="interactive"' in line:
            found[names[name]] = float(line.split()[-1])
    return found


async def measure(stack: Stack, args: argparse.Namespace) -> None:
    state = StateClient(stack.state_url, stack.config.internal_token, timeout_s=30)
    proc = psutil.Process(stack.pid(RUNNER))
    state_proc = psutil.Process(stack.pid("state"))
    try:
        await batch(state, 5, message(5, 1, 1), 0)
        await batch(state, 20, message(20, 5, 5), 0)
        idle_from = cpu_s(proc)
        await asyncio.sleep(5)
        idle_per_s = (cpu_s(proc) - idle_from) / 5
        text = message(args.tokens, args.token_delay_ms, args.ttft_ms)
        for n in range(args.rounds):
            before, cpu_from, state_from = counters(stack), cpu_s(proc), cpu_s(state_proc)
            wall = await batch(state, args.runs, text, args.spread_s)
            used = cpu_s(proc) - cpu_from
            state_used = cpu_s(state_proc) - state_from
            after = counters(stack)
            writes = after.get("writes", 0) - before.get("writes", 0)
            calls = after.get("calls", 0) - before.get("calls", 0)
            batching = f"; {writes:.0f} event writes in {calls:.0f} calls" if calls else ""
            out(
                f"round {n}: wall {wall:.1f} s, runner CPU {used:.2f} s: "
                f"{1000 * used / args.runs:.1f} ms/run "
                f"({1000 * (used - idle_per_s * wall) / args.runs:.1f} ms/run less idle); "
                f"state {1000 * state_used / args.runs:.1f} ms/run" + batching
            )
    finally:
        await state.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--runs", type=int, default=50)
    add("--tokens", type=int, default=100)
    add("--token-delay-ms", type=float, default=200.0)
    add("--ttft-ms", type=float, default=200.0)
    add("--spread-s", type=float, default=5.0, help="arrivals spread over this; 0: a burst")
    add("--rounds", type=int, default=2)
    add("--trace", action="store_true", help="tracing on (100%%), to a discarding receiver")
    args = parser.parse_args()
    out(
        f"{args.runs} runs x {args.tokens} tokens {args.token_delay_ms:g} ms apart, "
        f"TTFT {args.ttft_ms:g} ms, arrivals over {args.spread_s:g} s"
    )
    overrides: dict[str, dict[str, str]] = {"runner": {"RELAY_RUNNER_CONCURRENCY": "250"}}
    if args.trace:
        overrides["all"] = {"OTEL_EXPORTER_OTLP_ENDPOINT": discarding_receiver()}
    out(f"tracing {'on (100%)' if args.trace else 'off'}")
    stack = start_test_stack(overrides)
    try:
        asyncio.run(measure(stack, args))
    finally:
        data_dir = stack.config.data_dir
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
