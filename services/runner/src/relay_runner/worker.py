"""The worker loop: read the pool's queue, run entries concurrently, drain on shutdown.

Decisions (after arq's worker):
- The queue is one stream per partition (`streams`: a fair sweep, then the
  pool's doorbell); the loop sees one `read`.
- Concurrency is a semaphore of `runner_concurrency` slots. The loop takes
  one slot (waiting when all are busy), then every other free slot, and asks
  XREADGROUP for exactly that many entries, so it never takes work it cannot
  start.
- Dead runners' entries: every `autoclaim_every_s`, XAUTOCLAIM takes entries
  idle longer than the lease TTL. Live runners refresh their entries' idle
  time from the lease heartbeat, so only orphans qualify; a claim that state
  refuses as `leased` leaves the entry alone anyway.
- An entry for a run this process already executes (a reconciler
  re-enqueue, say) is not run twice, and not acked at once either: the
  execution adopts it and acks it with its own entry. Acking it at once lost
  runs when Redis had lost its data: the reconciler's entry was the run's
  only one, and the execution in flight was about to find its lease gone and
  stop without acking; left pending, the entry is reclaimed and the run
  resumes.
- Redis or state down: log, back off (exponential, jitter, capped at 5 s),
  recreate the consumer group (Redis may have come back empty), go on. The
  loop never dies of a dependency.
- Shutdown: stop reading (entries that a blocking read returns after the
  signal are put back on the queue unclaimed, for another runner), let runs
  finish until `drain_timeout_s`, then cancel the rest; each cancelled run
  hands itself back to the queue (execution.py), so another runner resumes
  it at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError, ResponseError

from relay_runner import metrics
from relay_runner.execution import Execution
from relay_runner.retry import Backoff
from relay_runner.runtime import Runtime
from relay_runner.streams import Entry, LayoutMismatch

__all__ = ["Worker"]

log = logging.getLogger(__name__)

HAND_BACK_TIMEOUT_S = 10.0


class Worker:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._slots = asyncio.Semaphore(rt.settings.runner_concurrency)
        self._tasks: dict[asyncio.Task[None], Execution] = {}
        self._backoff = Backoff()
        self._group_ready = False
        self._last_autoclaim = 0.0
        self._last_advertised = 0.0
        self.last_error: str | None = None
        metrics.CAPACITY.labels(rt.pool).set(rt.settings.runner_concurrency)
        metrics.RUNS_IN_FLIGHT.labels(rt.pool).set(0)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        """Read and dispatch until `rt.stopping` is set."""
        log.info(
            "runner started",
            extra={"pool": self.rt.pool, "consumer": self.rt.settings.consumer_name},
        )
        while not self.rt.stopping.is_set():
            try:
                await self._iteration()
                self._backoff.reset()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._recover(exc)

    async def _iteration(self) -> None:
        if not self._group_ready:
            await self.rt.queue.ensure_group()
            self._group_ready = True
        await self._advertise()
        taken = await self._take_slots()
        if taken == 0:
            return
        try:
            entries = await self._autoclaim(taken)
            if not entries:
                entries = await self.rt.queue.read(
                    self.rt.blocking, count=taken, block_ms=self.rt.settings.block_ms
                )
                if entries and self.rt.stopping.is_set():
                    await self._give_back(entries)
                    return
            for entry in entries:
                if await self._dispatch(entry):
                    taken -= 1
        finally:
            for _ in range(taken):
                self._slots.release()

    async def _give_back(self, entries: list[Entry]) -> None:
        """Entries a blocking read returned after SIGTERM: back on the queue, unclaimed."""
        ids = [e.id for e in entries]
        log.info("shutting down: entries read during the signal go back", extra={"entries": ids})
        await self.rt.queue.requeue(entries)

    async def _recover(self, exc: Exception) -> None:
        dependency = "redis" if isinstance(exc, RedisError) else "internal"
        metrics.DEPENDENCY_ERRORS.labels(dependency).inc()
        if isinstance(exc, LayoutMismatch):
            log.error("queue layout mismatch; not reading: %s", exc)
        elif isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
            log.warning("consumer group missing (Redis lost it?); recreating")
        elif isinstance(exc, RedisError):
            log.warning("queue read failed: %s; backing off", type(exc).__name__)
        else:
            log.exception("worker loop error; backing off")
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self._group_ready = False
        delay = self._backoff.next_delay()
        try:
            await asyncio.wait_for(self.rt.stopping.wait(), timeout=delay)
        except TimeoutError:
            pass

    async def _take_slots(self) -> int:
        """One slot (waiting for it, or for shutdown), plus every other free slot."""
        acquire = asyncio.ensure_future(self._slots.acquire())
        stop = asyncio.ensure_future(self.rt.stopping.wait())
        try:
            await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not acquire.done():
            acquire.cancel()
            return 0
        if self.rt.stopping.is_set():
            self._slots.release()
            return 0
        taken = 1
        while not self._slots.locked():
            await self._slots.acquire()
            taken += 1
        return taken

    async def _advertise(self) -> None:
        """Announce this runner's slots to the pool's admission (expires unless renewed)."""
        now = time.monotonic()
        if now - self._last_advertised < self.rt.settings.autoclaim_every_s:
            return
        settings = self.rt.settings
        await self.rt.capacity.advertise(
            settings.consumer_name, settings.runner_concurrency, ttl_s=settings.lease_ttl_s
        )
        self._last_advertised = now

    async def _withdraw(self) -> None:
        try:
            await self.rt.capacity.withdraw(self.rt.settings.consumer_name)
        except RedisError:
            log.warning("could not withdraw the advertised capacity; it expires by itself")

    async def _autoclaim(self, count: int) -> list[Entry]:
        now = time.monotonic()
        if now - self._last_autoclaim < self.rt.settings.autoclaim_every_s:
            return []
        self._last_autoclaim = now
        min_idle_ms = int(self.rt.settings.lease_ttl_s * 1000)
        entries = await self.rt.queue.autoclaim(min_idle_ms=min_idle_ms, count=count)
        if entries:
            log.info("reclaimed idle entries", extra={"entries": [e.id for e in entries]})
        return entries

    def _running(self, run_id: str | None) -> Execution | None:
        """The execution in flight here of this run, if any."""
        if run_id is None:
            return None
        return next((x for x in self._tasks.values() if x.run_id == run_id), None)

    async def _dispatch(self, entry: Entry) -> bool:
        """Start the entry's run; False when it needs no slot (the run is in flight
        here: this entry is ours, reclaimed from ourselves, or another of its entries)."""
        running = self._running(entry.run_id)
        if running is not None:
            if entry.id not in running.entry_ids:
                log.info(
                    "another entry of a run in flight here; acked when it ends",
                    extra={"run_id": entry.run_id},
                )
                running.adopt(entry.id)
            return False
        execution = Execution(self.rt, entry)
        task = asyncio.create_task(execution.handle())
        self._tasks[task] = execution
        metrics.RUNS_IN_FLIGHT.labels(self.rt.pool).set(len(self._tasks))
        task.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._slots.release()
        metrics.RUNS_IN_FLIGHT.labels(self.rt.pool).set(len(self._tasks))
        if not task.cancelled() and task.exception() is not None:
            log.error("run task crashed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for runs in flight until the deadline (or a second signal), then hand
        the rest back."""
        await self._withdraw()
        pending = await self._wait_runs(self.rt.settings.drain_timeout_s)
        if pending:
            log.warning("drain deadline reached; handing runs back", extra={"runs": len(pending)})
            self.rt.releasing = True
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=HAND_BACK_TIMEOUT_S)
        log.info("drained")

    async def _wait_runs(self, timeout_s: float) -> set[asyncio.Task[None]]:
        tasks = set(self._tasks)
        if not tasks:
            return set()
        log.info("draining", extra={"runs": len(tasks)})
        runs = asyncio.ensure_future(asyncio.wait(tasks))
        force = asyncio.ensure_future(self.rt.force_stop.wait())
        try:
            await asyncio.wait({runs, force}, timeout=timeout_s, return_when="FIRST_COMPLETED")
        finally:
            runs.cancel()
            force.cancel()
        return {task for task in tasks if not task.done()}
