"""Pure parts of the devstack: port settings, environment layering, key files, the lock."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from relay_devstack.devlock import DevLock, is_locked, read_info
from relay_devstack.devsecrets import write_secret
from relay_devstack.ports import PortError, Ports, ensure_free
from relay_devstack.specs import child_env, core_specs, runner_spec, service_spec


def test_dev_ports_default_and_override() -> None:
    ports = Ports.from_env({"RELAY_GATEWAY_PORT": "7080"})
    assert (ports.gateway, ports.events, ports.state, ports.modelsim) == (7080, 8081, 8082, 8090)
    assert (ports.runner_background, ports.runner_interactive) == (8083, 8084)
    management = (ports.gateway_management, ports.events_management, ports.state_management)
    assert management == (9080, 9081, 9082)


@pytest.mark.parametrize("value", ["http", "0", "70000"])
def test_bad_port_setting_names_the_variable(value: str) -> None:
    with pytest.raises(PortError, match="RELAY_EVENTS_PORT"):
        Ports.from_env({"RELAY_EVENTS_PORT": value})


def test_taken_port_names_port_and_variable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortError) as err:
            ensure_free({"gateway": port}, grace_s=0.2)
    assert f"port {port} (gateway) is already in use" in str(err.value)
    assert "RELAY_GATEWAY_PORT" in str(err.value)


def test_env_layers_base_shared_service_then_overrides() -> None:
    spec = runner_spec("runner-x", "background", 1234, "http://sim")
    env = child_env(
        spec,
        base={"PATH": "/bin", "RELAY_MANAGEMENT_PORT": "1"},
        shared={"RELAY_REDIS_URL": "redis://r"},
        overrides={
            "all": {"RELAY_LOG_LEVEL": "DEBUG", "RELAY_LEASE_TTL_S": "9"},
            "runner": {"RELAY_LEASE_TTL_S": "3"},
            "runner-x": {"RELAY_DRAIN_TIMEOUT_S": "5"},
            "gateway": {"RELAY_MAX_BODY_BYTES": "1"},
        },
    )
    assert env["PATH"] == "/bin"
    # the service's own setting beats the base (a runner's one port is its management port)
    assert env["RELAY_MANAGEMENT_PORT"] == "1234"
    assert spec.management_url() == spec.url() == "http://127.0.0.1:1234"
    assert env["RELAY_LEASE_TTL_S"] == "3"  # group beats all
    assert env["RELAY_DRAIN_TIMEOUT_S"] == "5"  # name beats the default
    assert env["RELAY_OPENAI_BASE_URL"] == "http://sim/v1"
    assert "RELAY_MAX_BODY_BYTES" not in env


def test_a_spec_of_each_kind_wired_to_the_stack_ports() -> None:
    ports = Ports.from_env({})
    events = service_spec("events", "events-2", 9001, ports=ports, management_port=9101)
    assert (events.script, events.kind, events.env["RELAY_PORT"]) == (
        "relay-events",
        "events",
        "9001",
    )
    assert events.env["RELAY_MANAGEMENT_PORT"] == "9101"
    assert (events.management_url(), events.ready_path, events.alive_path) == (
        "http://127.0.0.1:9101",
        "/readyz",
        "/livez",
    )
    runner = service_spec("runner", "r2", 9002, ports=ports, pool="interactive")
    assert runner.env["RELAY_ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8090"  # the stack's modelsim
    assert (runner.group, runner.env["RELAY_RUNNER_POOL"]) == ("runner", "interactive")
    assert service_spec("modelsim", "m2", 9003, ports=ports).ready_path == "/healthz"
    with pytest.raises(ValueError, match="unknown service kind"):
        service_spec("nginx", "n", 1, ports=ports)
    assert list(core_specs(ports, database_url="", only=("events", "state"))) == ["state", "events"]


def test_only_state_gets_the_database_url() -> None:
    specs = core_specs(Ports.from_env({}), database_url="postgresql://db")
    holders = [name for name, s in specs.items() if "RELAY_DATABASE_URL" in s.env]
    assert holders == ["state"]
    assert specs["gateway"].env["RELAY_EVENTS_PUBLIC_URL"] == "http://127.0.0.1:8081"


def test_secret_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_secret(path, "rk_new")
    assert path.read_text() == "rk_new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_lock_is_exclusive_and_publishes_info(tmp_path: Path) -> None:
    path = tmp_path / "dev.lock"
    first = DevLock(path)
    assert first.acquire()
    first.publish({"gateway": "http://127.0.0.1:1"})
    assert is_locked(path)
    assert not DevLock(path).acquire()
    assert read_info(path) == {"pid": os.getpid(), "gateway": "http://127.0.0.1:1"}
    first.release()
    assert not is_locked(path)
