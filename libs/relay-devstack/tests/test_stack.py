"""Per-service control of a Stack, as the chaos tests use it: kill, pause,
restart, extra runners, Redis restarted empty, and a stop that leaves nothing."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from relay_devstack.harness import discard, start_test_stack, wait_for
from relay_devstack.procs import descendants, pid_alive
from relay_devstack.stack import Stack, StackConfig, StackError


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = start_test_stack({"runner": {"RELAY_LEASE_TTL_S": "3"}})
    yield running
    running.stop()
    shutil.rmtree(running.config.data_dir, ignore_errors=True)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_overrides_reach_only_their_services(stack: Stack) -> None:
    runner = _environ(stack.pid("runner-background"))
    assert runner["RELAY_LEASE_TTL_S"] == "3"
    assert runner["RELAY_INTERNAL_TOKEN"] == stack.config.internal_token
    assert "RELAY_LEASE_TTL_S" not in _environ(stack.pid("gateway"))
    assert "RELAY_DATABASE_URL" not in _environ(stack.pid("gateway"))


def test_kill_is_on_purpose_and_start_service_brings_it_back(stack: Stack) -> None:
    old = stack.pid("runner-interactive")
    stack.kill("runner-interactive", signal.SIGKILL)
    assert not pid_alive(old)
    assert stack.exited() == []  # killed on purpose: not reported as a crash
    stack.start_service("runner-interactive")
    assert stack.pid("runner-interactive") != old


def test_a_crash_is_reported(stack: Stack) -> None:
    os.kill(stack.pid("modelsim"), signal.SIGKILL)  # not through the stack
    wait_for(lambda: stack.exited() == ["modelsim"], timeout_s=10, what="crash reported")
    stack.restart("modelsim")
    assert stack.exited() == []


def test_sigstop_and_sigcont(stack: Stack) -> None:
    pid = stack.pid("runner-background")
    stack.kill("runner-background", signal.SIGSTOP)
    wait_for(lambda: _proc_state(pid) == "T", timeout_s=5, what="runner stopped")
    stack.kill("runner-background", signal.SIGCONT)
    wait_for(lambda: _proc_state(pid) != "T", timeout_s=5, what="runner continued")
    stack.wait_ready(["runner-background"])


def test_extra_runner_with_its_own_env(stack: Stack) -> None:
    name = stack.start_extra_runner("background", "runner-b2", env={"RELAY_DRAIN_TIMEOUT_S": "5"})
    env = _environ(stack.pid(name))
    assert (env["RELAY_CONSUMER_NAME"], env["RELAY_DRAIN_TIMEOUT_S"]) == ("runner-b2", "5")
    assert env["RELAY_LEASE_TTL_S"] == "3"  # the group override applies too
    stack.kill(name, signal.SIGTERM)
    assert stack.wait_exit(name, timeout_s=10) == 0  # drained and exited cleanly
    assert stack.exited() == []


def test_extra_service_of_any_kind_is_wired_to_the_stack(stack: Stack) -> None:
    name = stack.start_extra("events", env={"RELAY_KEEPALIVE_S": "0.5"})
    env = _environ(stack.pid(name))
    assert env["RELAY_KEEPALIVE_S"] == "0.5"
    assert (env["RELAY_REDIS_URL"], env["RELAY_STATE_URL"]) == (stack.redis_url, stack.state_url)
    assert env["RELAY_PORT"] == str(stack.specs[name].port) != str(stack.specs["events"].port)
    assert env["RELAY_MANAGEMENT_PORT"] == str(stack.specs[name].management_port)
    assert httpx.get(stack.management_url(name) + "/readyz", timeout=5).status_code == 200
    assert stack.stop_service(name) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    with pytest.raises(StackError, match="exists already"):
        stack.start_extra("events", name)


def test_part_of_a_stack_beside_servers_a_test_has(stack: Stack) -> None:
    """A service's own tests: only the processes they need, on this stack's Redis and state."""
    part = start_test_stack(
        services=("gateway",),
        redis_url=stack.redis_url,
        state_url=stack.state_url,
        internal_token=stack.config.internal_token,
        dev_keys=False,
    )
    try:
        assert list(part.children) == ["gateway"]
        assert part.redis is None and part.postgres is None  # nothing embedded, nothing migrated
        assert _environ(part.pid("gateway"))["RELAY_STATE_URL"] == stack.state_url
        key = stack.new_key("u-part")
        runs = httpx.get(
            part.gateway_url + "/v1/runs", headers={"Authorization": f"Bearer {key}"}, timeout=5
        )
        assert runs.status_code == 200, runs.text
    finally:
        discard(part)
    with pytest.raises(StackError, match="unknown services"):
        Stack(StackConfig.for_tests(part.config.data_dir, services=("gateway", "nginx")))


def test_redis_restarted_empty_loses_every_key(stack: Stack) -> None:
    assert stack.redis is not None
    client = redis.Redis.from_url(stack.redis_url)
    client.set("relay:test:marker", "1")
    stack.redis.restart(empty=True, hard=True)
    assert client.get("relay:test:marker") is None
    stack.wait_ready()  # services reconnect by themselves
    client.close()


def test_postgres_pause_and_resume(stack: Stack) -> None:
    assert stack.postgres is not None
    stack.postgres.pause()
    stack.postgres.resume()
    stack.wait_ready(["state"])


def test_stop_leaves_no_process(stack: Stack) -> None:
    """Last in this module: stops the module's stack (the fixture's stop is a no-op then)."""
    tops = [stack.child(name) for name in [*stack.specs, "redis", "postgres"]]
    pids = {c.pid for c in tops if c is not None and c.alive()}
    pids |= {p for pid in pids for p in descendants(pid)}  # postgres backends
    assert len(pids) >= 8
    stack.stop()
    assert not [p for p in pids if pid_alive(p)]
