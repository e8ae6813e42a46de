"""`relay-runner` as a process: dependencies down at start, SIGTERM, a crash mid-run."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from redis.asyncio import Redis
from runner_testkit import (
    TOKEN,
    RunnerProcess,
    Stack,
    pending_ids,
    queue_entry,
    run_events,
    sim,
    wait_done,
    wait_for,
)

from relay_core import keys
from relay_core.redis import create_redis
from relay_core.state_api import CreateRunIn
from relay_core.state_client import StateClient
from relay_devstack.procs import free_port
from relay_devstack.servers import RedisServer
from relay_runner.worker import Worker


async def probe(proc: RunnerProcess, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=proc.url, timeout=5) as http:
        return await http.get(path)


async def wait_exit(proc: RunnerProcess, timeout_s: float) -> int:
    async def exited() -> bool:
        return not proc.child.alive()

    await wait_for(exited, timeout_s=timeout_s, what="the runner to exit")
    code = proc.child.proc.returncode
    assert code is not None
    return code


async def submit(state: StateClient, user: str, message: str) -> str:
    run, _ = await state.create_run(CreateRunIn(user_id=user, message=message, model="sim-default"))
    return run.run_id


async def test_starts_with_dependencies_down_and_recovers(
    start_runner: Callable[..., RunnerProcess],
    relay_tmp: Path,
    stack: Stack,
    user: str,
) -> None:
    redis_port, state_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    proc = start_runner(redis_url=redis_url, state_url=f"http://127.0.0.1:{state_port}")
    assert (await probe(proc, "/healthz")).status_code == 200
    ready = await probe(proc, "/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"]["message"] == "redis unreachable"

    redis_server = RedisServer(relay_tmp / "late-redis", port=redis_port).start()
    state_proc = None
    try:

        async def state_missing() -> bool:
            body = (await probe(proc, "/readyz")).json()
            return body.get("error", {}).get("message") == "state service unreachable"

        await wait_for(state_missing, what="readyz to blame state")
        state_proc = stack.start_state(port=state_port, redis_url=redis_url)

        async def ready_now() -> bool:
            return (await probe(proc, "/readyz")).status_code == 200

        await wait_for(ready_now, what="readyz to recover")
        state = StateClient(f"http://127.0.0.1:{state_port}", TOKEN)
        redis = create_redis(redis_url)
        try:
            run_id = await submit(state, user, "hello after the outage")
            found = await wait_done(redis, run_id)
            assert found[-1].data["status"] == "succeeded"
            # Redis comes back EMPTY (no queue, no group): the runner recreates the group.
            redis_server.restart(empty=True)
            await redis.aclose()
            redis = create_redis(redis_url)  # this test's connections died with the server
            await wait_for(ready_now, what="readyz after the Redis restart")
            run_id = await submit(state, user, "hello after the restart")
            found = await wait_done(redis, run_id)
            assert found[-1].data["status"] == "succeeded"
        finally:
            await state.aclose()
            await redis.aclose()
        metrics = (await probe(proc, "/metrics")).text
        assert 'relay_runner_capacity{pool="background"} 8.0' in metrics
        assert 'relay_runner_runs_finished_total{pool="background",status="succeeded"}' in metrics
        started = time.monotonic()
        proc.child.signal(signal.SIGTERM)  # idle: exits at once
        assert await wait_exit(proc, timeout_s=5) == 0
        assert time.monotonic() - started < 3
    finally:
        if state_proc is not None:
            stack.dev.stop_service(state_proc)
        redis_server.stop()


async def test_sigterm_drains_then_hands_the_run_to_another_runner(
    start_runner: Callable[..., RunnerProcess],
    start_inproc: Callable[..., Worker],
    state: StateClient,
    redis: Redis,
    user: str,
) -> None:
    proc = start_runner(drain_timeout_s=0.5)
    tools = [{"name": "wait", "args": {"seconds": 2}}]
    run_id = await submit(state, user, sim("slow", tools=tools))

    async def tool_running() -> bool:
        return any(e.type == "tool_start" for e in await run_events(redis, run_id))

    await wait_for(tool_running, what="the wait tool to start")
    old_entry = await queue_entry(redis, keys.run_queue("background", run_id), run_id)
    started = time.monotonic()
    proc.child.signal(signal.SIGTERM)
    assert await wait_exit(proc, timeout_s=8) == 0
    assert time.monotonic() - started < 0.5 + 3  # the drain deadline, plus the hand-back
    assert await redis.get(keys.lease(run_id)) is None  # released, not left to expire
    new_entry = await queue_entry(redis, keys.run_queue("background", run_id), run_id)
    assert new_entry is not None and new_entry != old_entry
    assert old_entry not in await pending_ids(redis, keys.run_queue("background", run_id))
    status = [e for e in await run_events(redis, run_id) if e.type == "status"]
    assert status and "shutting down" in status[-1].data["message"]

    start_inproc()
    found = await wait_done(redis, run_id)
    resumed = [e.data for e in found if e.type == "resumed"]
    assert resumed == [{"attempt": 2, "from_step": 0}]
    assert found[-1].data["status"] == "succeeded"
    assert (await state.get_run(run_id)).attempts == 2


async def test_a_crash_mid_run_resumes_elsewhere_without_rerunning_a_tool(
    start_runner: Callable[..., RunnerProcess],
    start_inproc: Callable[..., Worker],
    state: StateClient,
    redis: Redis,
    user: str,
    stack: Stack,
) -> None:
    proc = start_runner()
    tools = [{"name": "record", "args": {"value": "once"}},
             {"name": "wait", "args": {"seconds": 1}}]  # fmt: skip
    run_id = await submit(state, user, sim("work", tools=tools))

    async def waiting() -> bool:
        found = await run_events(redis, run_id)
        return any(e.type == "tool_start" and e.data["name"] == "wait" for e in found)

    await wait_for(waiting, what="the record tool to finish and wait to start")
    proc.child.signal(signal.SIGKILL)
    await wait_exit(proc, timeout_s=5)

    start_inproc()  # takes the entry once it has been idle for a lease TTL
    found = await wait_done(redis, run_id, timeout_s=20)
    assert found[-1].data["status"] == "succeeded"
    assert [e.type for e in found].count("done") == 1
    assert [e.data["attempt"] for e in found if e.type == "resumed"] == [2]
    assert stack.records(run_id) == ["once"]  # not executed again by the new attempt
    text = "".join(e.data["text"] for e in found if e.type == "token" and e.data["step"] == 1)
    assert "Tool record returned recorded once." in text
