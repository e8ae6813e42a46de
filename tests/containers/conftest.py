"""Fixtures of `make test-containers` (not collected by `make test`: pyproject's
`norecursedirs` leaves this folder out; it needs podman and the images).

One session: a podman network of its own, the embedded Redis and Postgres
listening on that network's gateway address (and loopback), and the chart's
release started from the images `make images` built. Everything started is
removed at the end, whatever happened (and what a killed run left behind is
removed at the start of the next). Figures are printed at the end and written
to .relay/containers/figures.json.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator

import pytest

from relay_devstack.containers import Engine
from relay_devstack.servers import PostgresServer, RedisServer
from tests.containers.release import (
    Databases,
    RunningRelease,
    built_images,
    chart_values,
    plan_release,
    reach,
    render_release,
    secrets_for,
    start_release,
)
from tests.containers.runtime import Runtime
from tests.deploy.chart import REPO

FIGURES: dict[str, object] = {}
READY_TIMEOUT_S = 180


def record(name: str, value: object) -> None:
    FIGURES[name] = round(value, 1) if isinstance(value, float) else value


@pytest.fixture(scope="session")
def engine() -> Engine:
    found = Engine.detect(state_dir=REPO / ".relay")
    if found.name != "podman":
        pytest.fail(f"make test-containers runs the pods with podman; found {found.binary}")
    if os.geteuid() != 0:
        # Rootless podman keeps its bridges in a namespace of their own: this host
        # could not reach the pods, nor they the embedded servers on the bridge.
        pytest.fail("make test-containers runs as root (podman's bridge networks)")
    Runtime.sweep(found)
    return found


@pytest.fixture(scope="session")
def images(engine: Engine) -> dict[str, str]:
    found = built_images(engine)
    manifest = json.loads((REPO / ".relay/images/images.json").read_text())
    record("base image", manifest["base"]["ref"])
    for service, image in sorted(manifest["images"].items()):
        record(f"image relay-{service} MB", image["size_bytes"] / 1e6)
        record(f"image relay-{service} build s", float(image["build_s"]))
    return found


@pytest.fixture(scope="session")
def runtime(engine: Engine, images: dict[str, str]) -> Iterator[Runtime]:
    run_id = f"rct-{secrets.token_hex(4)}"
    made = Runtime(engine, run_id, Runtime.root_folder(run_id))
    try:
        made.create_network()
        made.hold_network(next(iter(images.values())))
        yield made
    finally:
        made.close()


@pytest.fixture(scope="session")
def databases(runtime: Runtime) -> Iterator[Databases]:
    assert runtime.network is not None
    gateway = runtime.network.gateway
    folder = runtime.root / "databases"
    folder.mkdir(mode=0o755)
    redis = RedisServer(folder / "redis", bind=("127.0.0.1", gateway))
    postgres = PostgresServer(
        folder / "postgres",
        listen=("127.0.0.1", gateway),
        client_networks=(runtime.network.subnet,),
    )
    try:
        redis.start()
        postgres.start()
        yield Databases(
            redis_url=reach(redis.url, gateway), database_url=reach(postgres.url, gateway)
        )
    finally:
        postgres.stop()
        redis.stop()


@pytest.fixture(scope="session")
def release(runtime: Runtime, images: dict[str, str], databases: Databases) -> RunningRelease:
    values = chart_values(images)
    secret_objects = secrets_for(values, databases)
    plan = plan_release(
        render_release(values),
        secret_objects,
        run_id=runtime.run_id,
        network=runtime.run_id,
        files_root=runtime.root / "files",
    )
    started = time.monotonic()
    figures = start_release(runtime, plan, timeout_s=READY_TIMEOUT_S)
    for name, seconds in figures.items():
        record(f"release: {name} s", seconds)
    return RunningRelease(
        runtime=runtime,
        plan=plan,
        values=values,
        secrets=secret_objects,
        figures=figures,
        started=started,
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("make test-containers figures")
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name:48} {value}")
    out = REPO / ".relay" / "containers" / "figures.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(FIGURES, indent=2) + "\n")
