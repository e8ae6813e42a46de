"""`relay_core.coalesce.Coalescer`: calls that wait at the same moment go in one
send, each caller gets its own answer or exception, and nothing waits on a timer.

Pure asyncio (no Redis, no HTTP): the send function is the test's own, which
records every batch it is handed; the real sends (state's batch requests, the
runner's Redis pipelines) are exercised by the service and e2e suites."""

from __future__ import annotations

import asyncio

import pytest

from relay_core.coalesce import Coalescer


class Recorder:
    """A send that answers `item * 10`, or the exception an item names; it can be held."""

    def __init__(self) -> None:
        self.batches: list[list[object]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, items: list[object]) -> list[object]:
        self.batches.append(list(items))
        await self.gate.wait()
        return [item if isinstance(item, BaseException) else item * 10 for item in items]  # type: ignore[operator]


async def first_batch_held(rec: Recorder, coalescer: Coalescer[object, object]) -> asyncio.Task:
    """The call of 1, its batch in flight and held until `rec.gate` is set."""
    rec.gate.clear()
    first = asyncio.create_task(coalescer.call(1))
    while not rec.batches:
        await asyncio.sleep(0)
    return first


async def test_a_lone_call_goes_at_once() -> None:
    rec = Recorder()
    coalescer: Coalescer[object, object] = Coalescer(rec.send)
    assert await asyncio.wait_for(coalescer.call(4), timeout=1.0) == 40
    assert rec.batches == [[4]]


async def test_calls_arriving_while_a_batch_is_in_flight_go_together_next() -> None:
    rec = Recorder()
    coalescer: Coalescer[object, object] = Coalescer(rec.send)
    first = await first_batch_held(rec, coalescer)
    rest = [asyncio.create_task(coalescer.call(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    rec.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(first, *rest), timeout=1.0)
    assert answers == [10, 20, 30, 40]
    assert rec.batches == [[1], [2, 3, 4]]


async def test_items_submitted_with_no_await_between_go_in_one_batch_in_order() -> None:
    """A caller's few calls (the gateway's kill-switch read and user-slot
    script): one batch, whatever else is waiting."""
    rec = Recorder()
    coalescer: Coalescer[object, object] = Coalescer(rec.send)
    first = await first_batch_held(rec, coalescer)
    other = asyncio.create_task(coalescer.call(2))
    await asyncio.sleep(0)
    mine = [coalescer.submit(n) for n in (3, 4, 5)]
    rec.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(first, other, *mine), timeout=1.0)
    assert answers == [10, 20, 30, 40, 50]
    assert rec.batches == [[1], [2, 3, 4, 5]]


async def test_a_batch_is_at_most_max_batch_items() -> None:
    rec = Recorder()
    coalescer: Coalescer[object, object] = Coalescer(rec.send, max_batch=2)
    answers = await asyncio.wait_for(
        asyncio.gather(*(coalescer.call(n) for n in range(5))), timeout=1.0
    )
    assert answers == [0, 10, 20, 30, 40]
    assert [len(b) for b in rec.batches] == [2, 2, 1]
    assert [n for b in rec.batches for n in b] == [0, 1, 2, 3, 4]  # in arrival order


async def test_an_items_exception_is_its_callers_alone() -> None:
    rec = Recorder()
    coalescer: Coalescer[object, object] = Coalescer(rec.send)
    boom = LookupError("item 2 refused")
    results = await asyncio.gather(
        coalescer.call(1), coalescer.call(boom), coalescer.call(3), return_exceptions=True
    )
    assert results == [10, boom, 30]


async def test_a_failed_send_fails_every_call_in_it_and_the_next_batch_goes() -> None:
    calls = 0

    async def flaky(items: list[object]) -> list[object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("state unreachable")
        return [f"ok {item}" for item in items]

    coalescer: Coalescer[object, object] = Coalescer(flaky)
    results = await asyncio.gather(coalescer.call("a"), coalescer.call("b"), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert await asyncio.wait_for(coalescer.call("c"), timeout=1.0) == "ok c"


async def test_a_call_cancelled_before_its_batch_went_out_is_not_sent() -> None:
    rec = Recorder()
    coalescer: Coalescer[object, object] = Coalescer(rec.send)
    rec.gate.clear()
    first = asyncio.create_task(coalescer.call(1))
    while not rec.batches:
        await asyncio.sleep(0)
    dropped = asyncio.create_task(coalescer.call(2))
    kept = asyncio.create_task(coalescer.call(3))
    await asyncio.sleep(0)
    dropped.cancel()
    rec.gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, kept), timeout=1.0) == [10, 30]
    assert rec.batches == [[1], [3]]
    with pytest.raises(asyncio.CancelledError):
        await dropped


async def test_closing_fails_what_is_still_waiting_with_the_closed_message() -> None:
    rec = Recorder()
    coalescer: Coalescer[object, object] = Coalescer(rec.send, closed="the runner is closing")
    rec.gate.clear()
    waiting = [asyncio.create_task(coalescer.call(n)) for n in (1, 2)]
    while not rec.batches:
        await asyncio.sleep(0)
    await coalescer.aclose()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert str(results[0]) == "the runner is closing"
