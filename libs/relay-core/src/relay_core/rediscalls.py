"""Small Redis calls made at the same moment, coalesced into few round trips.

Why: a runner's runs each make a handful of single Redis calls besides
their event writes (`relay_runner.publish`): the first look at the cancel
flag, the circuit breaker's allow and record, the budget's reserve and
settle, the ack of the queue entry. State queues every run it creates (the
entry and its marker, then the doorbell), the items of one creation batch
at the same moment. Each was a round trip (a pooled connection taken and
given back, a socket write, a wake-up, a reply to parse); under a burst they
were a large share of each process's Redis work. `RedisCalls` sends the
calls that wait at the same moment, from every run, as ONE pipeline. One
per process.

Decisions (as `relay_runner.publish` does for event writes):
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
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from relay_core.coalesce import Coalescer

__all__ = ["MAX_BATCH", "RedisCalls"]

MAX_BATCH = 256


@dataclass(slots=True, frozen=True)
class _Call:
    args: tuple[Any, ...]  # the command (EVALSHA's sha included)
    script: AsyncScript | None  # for a reload when Redis lost it


class RedisCalls:
    """`script(...)` and `command(...)` answer as alone, sent together.

    The waiting, batching and per-caller answers are `relay_core.coalesce`'s
    `Coalescer` (as the state client's batches); a batch here is a pipeline."""

    def __init__(
        self, redis: Redis, *, max_batch: int = MAX_BATCH, closed: str = "Redis calls were closed"
    ) -> None:
        self._redis = redis
        self._calls: Coalescer[_Call, Any] = Coalescer(
            self._pipeline, max_batch=max_batch, closed=closed
        )
        self.pipelines = 0  # round trips made (tests read them)
        self._scripts: dict[str, AsyncScript] = {}

    def register(self, lua: str) -> AsyncScript:
        """The script for `lua` on this client (made once), for `script(...)`."""
        found = self._scripts.get(lua)
        if found is None:
            found = self._scripts[lua] = self._redis.register_script(lua)
        return found

    async def script(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Any:
        """`await script(keys=keys, args=args)`, in the next pipeline."""
        return await self.script_soon(script, keys, args)

    async def command(self, *args: Any) -> Any:
        """`await redis.execute_command(*args)`, in the next pipeline."""
        return await self.command_soon(*args)

    # Calls queued one after another with no await between go in the same
    # pipeline, in order: a caller's few calls, one round trip.

    def script_soon(
        self, script: AsyncScript, keys: list[Any], args: list[Any]
    ) -> asyncio.Future[Any]:
        """`script(keys, args)` queued for the next pipeline; its answer's future."""
        return self._calls.submit(_Call(("EVALSHA", script.sha, len(keys), *keys, *args), script))

    def command_soon(self, *args: Any) -> asyncio.Future[Any]:
        """The command queued for the next pipeline; its answer's future."""
        return self._calls.submit(_Call(args, None))

    async def aclose(self) -> None:
        await self._calls.aclose()

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        """Each call's result, or the exception it raised (a failure of the whole
        pipeline raises, failing every call)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for c in batch:
                pipe.execute_command(*c.args)
            self.pipelines += 1
            results = await pipe.execute(raise_on_error=False)
        return [
            await self._alone(c) if isinstance(r, NoScriptError) and c.script is not None else r
            for c, r in zip(batch, results, strict=True)
        ]

    @staticmethod
    async def _alone(c: _Call) -> Any:
        """A script Redis lost: `AsyncScript` loads it and runs the call again."""
        assert c.script is not None
        numkeys = int(c.args[2])
        rest = list(c.args[3:])
        try:
            return await c.script(keys=rest[:numkeys], args=rest[numkeys:])
        except Exception as exc:
            return exc
