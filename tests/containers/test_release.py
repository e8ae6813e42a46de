"""The chart's pods, run for real from their images: a run streamed through them,
the chart's `helm test`, a runner killed and restarted, a runner drained.

The release is production-values.yaml (plus modelsim and the images) with the
embedded Redis and Postgres behind the test Secrets; see release.py. Each pod
runs exactly as the chart renders it (podkit.py): these tests then check that
the result behaves as a cluster would make it behave.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.containers.client import EventReader, chat, sim, submit
from tests.containers.conftest import record
from tests.containers.podkit import ContainerPlan, PodPlan
from tests.containers.probes import wait_ready
from tests.containers.release import RunningRelease

# Run inside a container: what the process may do and see.
INSIDE = r"""
import json, os, socket, sys
paths, names = json.loads(sys.argv[1]), json.loads(sys.argv[2])
status = dict(l.split(":\t", 1) for l in open("/proc/1/status").read().splitlines() if ":\t" in l)
writable = {}
for path in paths:
    try:
        with open(os.path.join(path, ".relay-write-check"), "w"):
            pass
        os.unlink(os.path.join(path, ".relay-write-check"))
        writable[path] = True
    except OSError as exc:
        writable[path] = exc.strerror
resolved = {}
for name in names:
    try:
        resolved[name] = socket.gethostbyname(name)
    except OSError as exc:
        resolved[name] = str(exc)
import glob, importlib, sysconfig
site = sysconfig.get_paths()["purelib"]
broken = {}
for so in sorted(glob.glob(site + "/**/*.so", recursive=True)):
    rel = os.path.relpath(so, site)
    if ".cpython-" not in rel and not rel.endswith(".abi3.so"):
        continue  # a shared library a wheel bundles, not a module
    name = rel.split(".")[0].replace("/", ".")
    try:
        importlib.import_module(name)
    except Exception as exc:
        broken[name] = f"{type(exc).__name__}: {exc}"[:300]
print(json.dumps({"uid": status["Uid"].split()[0], "gid": status["Gid"].split()[0],
                  "cap_eff": status["CapEff"], "no_new_privs": status["NoNewPrivs"],
                  "seccomp": status["Seccomp"], "hostname": socket.gethostname(),
                  "writable": writable, "resolved": resolved, "broken_extensions": broken}))
"""
# Session fixtures start the release inside the first test; a restart waits for a lease.
pytestmark = pytest.mark.timeout(600)
ROOT_PATHS = ["/", "/app", "/etc", "/usr", "/var/tmp", "/run", "/home", "/tmp"]


def inside(
    release: RunningRelease, container: ContainerPlan, paths: list[str], names: list[str]
) -> dict:
    code, out = release.runtime.exec(
        container, ["python", "-c", INSIDE, json.dumps(paths), json.dumps(names)]
    )
    assert code == 0, f"{container.name}: {out}"
    return dict(json.loads(out.splitlines()[-1]))


def test_every_pod_runs_as_the_chart_says(release: RunningRelease) -> None:
    """User, capabilities, no-new-privileges, seccomp, hostname, the emptyDirs as the
    only writable paths, every Service name resolving to the pod it selects, and
    every native module of the image's packages importable (a stripped library,
    or one the base image lacks, fails here rather than falling back quietly)."""
    workloads = release.plan.workloads
    expected_ip = {
        alias: release.runtime.ip(plan.container()) for plan in workloads for alias in plan.aliases
    }
    assert {"relay-gateway", "relay-events", "relay-state", "relay-modelsim"} <= set(expected_ip)
    problems = []
    for plan in workloads:
        for container in plan.containers:
            paths = sorted({*ROOT_PATHS, *container.writable})
            seen = inside(release, container, paths, sorted(expected_ip))
            where = f"{plan.component}/{container.name}"
            if container.run_as_user is not None and seen["uid"] != str(container.run_as_user):
                problems.append(f"{where}: runs as uid {seen['uid']}")
            if int(seen["cap_eff"], 16) != 0 or seen["no_new_privs"] != "1":
                problems.append(
                    f"{where}: capabilities {seen['cap_eff']}, nnp {seen['no_new_privs']}"
                )
            if seen["seccomp"] != "2":
                problems.append(f"{where}: seccomp mode {seen['seccomp']} (2 is a filter)")
            if seen["hostname"] != plan.pod_name:
                problems.append(f"{where}: hostname {seen['hostname']}")
            writable = {p for p, ok in seen["writable"].items() if ok is True}
            if container.read_only_root and writable != set(container.writable):
                problems.append(
                    f"{where}: writable {sorted(writable)}, the chart's emptyDirs "
                    f"are {sorted(container.writable)}"
                )
            if seen["broken_extensions"]:  # a library the base image lacks (libstdc++)
                problems.append(f"{where}: native modules fail: {seen['broken_extensions']}")
            wrong = {n: ip for n, ip in seen["resolved"].items() if ip != expected_ip[n]}
            if wrong:
                problems.append(f"{where}: resolves {wrong}, expected {expected_ip}")
    assert not problems, "\n".join(problems)


def test_a_run_with_a_tool_call_streams_to_done(release: RunningRelease) -> None:
    key = release.secret("adminApiKey")
    calculator = {"name": "calculator", "args": {"expression": "6*7"}}
    run = submit(release.url("gateway"), key, sim("What is 6*7?", tools=[calculator], tokens=12))
    reader = EventReader(release.url("events"), key, run["run_id"])
    done = reader.done(timeout_s=120)
    record("first container start -> streamed done s", time.monotonic() - release.started)
    assert done.data["status"] == "succeeded", reader.names()
    tool_end = next(e for e in reader.events if e.event == "tool_end")
    assert tool_end.data["name"] == "calculator" and tool_end.data["ok"] is True
    assert reader.names()[0] == "start" and "token" in reader.names()


def test_an_interactive_chat_streams_on_the_gateway(release: RunningRelease) -> None:
    events = chat(release.url("gateway"), release.secret("adminApiKey"), sim("hi", tokens=6))
    assert events[-1].event == "done" and events[-1].data["status"] == "succeeded"
    assert [e.event for e in events].count("token") >= 1


def test_the_charts_helm_test_pod_passes(release: RunningRelease) -> None:
    assert release.plan.tests, "the chart renders no helm test pod"
    for pod in release.plan.tests:
        started = time.monotonic()
        code, log = release.runtime.run_to_completion(pod, timeout_s=300)
        assert code == 0, f"{pod.owner} exited with {code}:\n{log}"
        assert "done:" in log
        record("helm test pod s", time.monotonic() - started)


def _runner(release: RunningRelease) -> tuple[PodPlan, ContainerPlan]:
    plan = release.plan.pod("runner-background")
    return plan, plan.container()


def test_a_runner_killed_and_restarted_finishes_the_run(release: RunningRelease) -> None:
    """SIGKILL mid-run, then the same container started again (what the kubelet
    does): the run is re-claimed when its lease expires and ends `succeeded`."""
    plan, runner = _runner(release)
    key = release.secret("adminApiKey")
    run = submit(release.url("gateway"), key, sim("long", tokens=80, token_delay_ms=100))
    reader = EventReader(release.url("events"), key, run["run_id"])
    reader.wait_for("a token", lambda got: any(e.event == "token" for e in got), timeout_s=60)
    killed = time.monotonic()
    release.runtime.kill(runner, signal.SIGKILL)
    assert release.runtime.wait_exit(runner, timeout_s=30) == 128 + signal.SIGKILL
    release.runtime.restart(runner)
    record("runner restart -> ready s", wait_ready(release.runtime, plan, timeout_s=120))
    done = reader.done(timeout_s=240)
    record("runner SIGKILL -> run done s", time.monotonic() - killed)
    assert done.data["status"] == "succeeded", reader.names()
    assert "resumed" in reader.names()


def test_a_runner_drains_on_sigterm_within_its_grace_period(release: RunningRelease) -> None:
    """SIGTERM with a run in flight: the run finishes in place and the runner
    exits on its own, before the chart's terminationGracePeriodSeconds."""
    plan, runner = _runner(release)
    key = release.secret("adminApiKey")
    run = submit(release.url("gateway"), key, sim("drain", tokens=40, token_delay_ms=100))
    reader = EventReader(release.url("events"), key, run["run_id"])
    reader.wait_for("a token", lambda got: any(e.event == "token" for e in got), timeout_s=60)
    stopped = release.runtime.stop(plan, runner)
    record("runner SIGTERM -> exit s", stopped.seconds)
    record("runner grace period s", float(plan.grace_s))
    assert not stopped.killed and stopped.exit_code == 0, stopped
    assert stopped.seconds < plan.grace_s
    done = reader.done(timeout_s=60)
    assert done.data["status"] == "succeeded" and "resumed" not in reader.names()
    release.runtime.restart(runner)
    wait_ready(release.runtime, plan, timeout_s=120)
