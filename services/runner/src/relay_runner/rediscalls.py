"""The small Redis calls of every run in this process, coalesced into few round trips.

Why: besides its event writes (`publish`), each run makes a handful of
single Redis calls of its own: the first look at its cancel flag, the
circuit breaker's allow and record, the budget's reserve and settle, the ack
of its queue entry. Each was a round trip (a pooled connection taken and
given back, a socket write, a wake-up, a reply to parse); under a burst of
runs they were a large share of the runner's Redis work. `RedisCalls` sends
the calls that wait at the same moment, from every run, as ONE pipeline.

Decisions (as `publish` does for event writes):
- No timer: a call goes out at once when no pipeline is in flight; the calls
  that arrive while one is in flight go together in the next one, sent as
  soon as it returns. An idle process adds no delay.
- Not a transaction: each call is what it was alone (a script stays atomic;
  calls of different runs never depended on each other), and a run never has
  two calls waiting (each caller awaits its call before its next), so a run's
  calls keep their order.
- Scripts go by EVALSHA; a script Redis does not know (after a restart or a
  flush) is loaded and its calls run again one by one, as `AsyncScript` does.
- Failures stay per call: a command that fails inside the pipeline fails only
  its caller, with the exception it would have raised alone; a pipeline that
  fails as a whole (connection lost, timeout) fails every call in it, and
  each caller handles that as it did a failed single call.
- At most `MAX_BATCH` calls per pipeline.
- On a Redis Cluster the pipeline is redis-py's cluster pipeline, which sends
  each node its calls (one round trip per node, in parallel). That works
  because every call is of one slot: no call here may take keys of two hash
  tags (a script is refused with CROSSSLOT, an MGET too), so the callers
  split theirs: the budget's reserve and settle are one script per counter,
  a run's first look at its flags one GET per key (`stopflags`).
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

__all__ = ["MAX_BATCH", "RedisCalls"]

MAX_BATCH = 256


@dataclass(slots=True)
class _Call:
    args: tuple[Any, ...]  # the command (EVALSHA's sha included)
    script: AsyncScript | None  # for a reload when Redis lost it
    future: asyncio.Future[Any]


class RedisCalls:
    """One per process: `script(...)` and `command(...)` answer as alone, sent together."""

    def __init__(self, redis: Redis, *, max_batch: int = MAX_BATCH) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._queue: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self.pipelines = 0  # round trips made (tests read them)

    async def script(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        """`await script(keys=keys, args=args)`, in the next pipeline."""
        return await self._call(("EVALSHA", script.sha, len(keys), *keys, *args), script)

    async def command(self, *args: Any) -> Any:
        """`await redis.execute_command(*args)`, in the next pipeline."""
        return await self._call(args, None)

    async def _call(self, args: tuple[Any, ...], script: AsyncScript | None) -> Any:
        call = _Call(args, script, asyncio.get_running_loop().create_future())
        self._queue.append(call)
        if self._flusher is None:
            # A fresh context: the flusher serves every run, it belongs to none.
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        return await call.future

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        batch: list[_Call] = []
        try:
            while self._queue:
                batch = [c for c in self._queue[: self._max_batch] if not c.future.done()]
                del self._queue[: self._max_batch]
                if batch:
                    await self._deliver(batch)
                batch = []
        finally:
            self._flusher = None
            for c in [*batch, *self._queue]:  # left over only when cancelled (closing)
                if not c.future.done():
                    c.future.set_exception(ConnectionError("the runner's Redis calls were closed"))
            self._queue.clear()

    async def _deliver(self, batch: list[_Call]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for c in batch:
                    pipe.execute_command(*c.args)
                self.pipelines += 1
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for c in batch:
                if not c.future.done():
                    c.future.set_exception(exc)
            return
        for c, result in zip(batch, results, strict=True):
            if c.future.done():
                continue
            if isinstance(result, NoScriptError) and c.script is not None:
                await self._alone(c)
            elif isinstance(result, Exception):
                c.future.set_exception(result)
            else:
                c.future.set_result(result)

    async def _alone(self, c: _Call) -> None:
        """A script Redis lost: `AsyncScript` loads it and runs the call again."""
        assert c.script is not None
        numkeys = int(c.args[2])
        rest = list(c.args[3:])
        try:
            c.future.set_result(await c.script(keys=rest[:numkeys], args=rest[numkeys:]))
        except Exception as exc:
            c.future.set_exception(exc)
