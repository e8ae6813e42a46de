"""Probing containers as the kubelet does: the chart's own probes, on their schedule.

A container counts as started when its startup probe succeeds (or at once
without one), and as ready when, after that, its readiness probe succeeds
`successThreshold` times in a row, each probe `periodSeconds` apart with its
own `timeoutSeconds`. A startup probe that fails `failureThreshold` times in a
row, or a container that exits, is a failure naming the container, the probe
and the log tail: where a kubelet would restart the container (and show
CrashLoopBackOff), the test stops and says why.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.containers.podkit import ContainerPlan, PodPlan, Probe
from tests.containers.runtime import ContainerFailed, Runtime


def probe_once(runtime: Runtime, container: ContainerPlan, ip: str, probe: Probe) -> str | None:
    """None when the probe succeeds, else why it failed."""
    try:
        if probe.kind == "http":
            url = f"{probe.scheme.lower()}://{ip}:{probe.port}{probe.path}"
            request = urllib.request.Request(url, headers=dict(probe.headers))  # noqa: S310
            with urllib.request.urlopen(request, timeout=probe.timeout_s) as response:  # noqa: S310
                return None if 200 <= response.status < 400 else f"HTTP {response.status}"
        if probe.kind == "tcp":
            with socket.create_connection((ip, probe.port), timeout=probe.timeout_s):
                return None
        code, out = runtime.exec(container, list(probe.command), timeout_s=probe.timeout_s)
        return None if code == 0 else f"exit {code}: {out[-200:]}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, urllib.error.URLError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _schedule(
    runtime: Runtime, container: ContainerPlan, probe: Probe, what: str, deadline: float, ip: str
) -> None:
    """Run `probe` every period until it has succeeded enough, or fail like a kubelet."""
    time.sleep(probe.initial_delay_s)
    successes = failures = 0
    last = ""
    while True:
        running, code = runtime.running(container)
        if not running:
            raise ContainerFailed(
                f"{container.name}: exited with code {code} before its {what} "
                f"probe ({probe.describe()}) passed; log tail:\n"
                f"{runtime.logs(container)}"
            )
        error = probe_once(runtime, container, ip, probe)
        if error is None:
            successes, failures = successes + 1, 0
            if successes >= probe.success_threshold:
                return
        else:
            successes, failures, last = 0, failures + 1, error
            if what == "startup" and failures >= probe.failure_threshold:
                raise ContainerFailed(
                    f"{container.name}: startup probe ({probe.describe()}) failed "
                    f"{failures} times ({last}); a kubelet would restart it; "
                    f"log tail:\n{runtime.logs(container)}"
                )
        if time.monotonic() > deadline:
            raise ContainerFailed(
                f"{container.name}: {what} probe ({probe.describe()}) not passed "
                f"in time (last: {last or 'no answer'}); log tail:\n"
                f"{runtime.logs(container)}"
            )
        time.sleep(probe.period_s)


def wait_ready(runtime: Runtime, plan: PodPlan, *, timeout_s: float) -> float:
    """Seconds until every container of the pod is started and ready."""
    started = time.monotonic()
    deadline = started + timeout_s
    for container in plan.containers:
        ip = runtime.ip(container)
        for what in ("startup", "readiness"):
            probe = container.probes.get(what)
            if probe is not None:
                try:
                    _schedule(runtime, container, probe, what, deadline, ip)
                except ContainerFailed as exc:
                    raise ContainerFailed(f"{plan.component} ({plan.owner}): {exc}") from None
    return time.monotonic() - started


def wait_all_ready(runtime: Runtime, plans: list[PodPlan], *, timeout_s: float) -> dict[str, float]:
    """Every pod probed at once (one thread each, as the kubelet probes in parallel);
    the first failure is raised, naming its component."""
    with ThreadPoolExecutor(max_workers=max(1, len(plans))) as pool:
        futures: dict[str, Callable[[], float]] = {
            plan.component: pool.submit(wait_ready, runtime, plan, timeout_s=timeout_s).result
            for plan in plans
        }
        return {component: result() for component, result in futures.items()}
