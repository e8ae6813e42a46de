"""The garbage collector of a long-running, latency-sensitive Relay process.

A service holding thousands of long-lived objects (the events service's ten
thousand subscriptions, a runner's hundreds of runs with their SDK clients
and transcripts, the gateway's streams) pays for CPython's default collector
thresholds with full collections every second or two under load, each
stopping the event loop for tens to a couple of hundred milliseconds: that
was the whole p99 of the fan-out benchmark (300 ms -> ~12 ms at 21,000
events/s, bench/fanout.py `engine`), and of the interactive time-to-first-
token tail (bench/interactive.py, the runner's part of the model segment).

`tune_gc()` raises the young-generation threshold so short-lived objects (an
event, a request) die by reference counting before they are promoted, and
full collections become rare. Cyclic garbage is still collected, only less
often. `gc.freeze()` moves what exists at start-up (modules, classes, the app)
out of every future collection. Each service's `main()` calls it once.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_gc"]

GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
