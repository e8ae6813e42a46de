"""A real Prometheus server for the dashboard and alert tests: Debian's
`prometheus` package (2.42+, with `promtool`), started on a free port with
its own configuration and a temporary data folder, scraping a running stack.

Why the distribution's binary: it is the query engine the dashboards run
against in production (promql-parser in test_observability.py checks syntax
and names; only a real Prometheus evaluates a query). `.ci/run` installs the
package when it is missing; a developer machine without it skips the tests
unless `CI` is set, where a missing binary is a failure.

Each service is one scrape job whose target carries the `namespace` and
`pod` labels Kubernetes service discovery would give it (release `relay`,
namespace `relay`), so the dashboards' `namespace=~"$namespace"` and the
alert rules' `pod=~"relay-(gateway)-.*"` select them as in a cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from relay_devstack.procs import free_port
from relay_devstack.specs import ServiceSpec
from relay_devstack.stack import Stack

NAMESPACE = "relay"
RELEASE = "relay"
SCRAPE_INTERVAL = "1s"


def binary(name: str) -> str:
    """The path of `prometheus` / `promtool`; skip (fail under CI) when missing."""
    found = shutil.which(name)
    if found is None:
        message = f"`{name}` is not installed: apt-get install prometheus (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def metrics_address(spec: ServiceSpec) -> str:
    """Where a service of the stack serves `/metrics` (host:port): the ONE place
    the tests know it (the service's management port)."""
    return spec.management_url().removeprefix("http://")


def scrape_jobs(stack: Stack) -> list[dict[str, Any]]:
    """One job per Relay service of the stack (modelsim exports no metrics)."""
    jobs = []
    for name, spec in stack.specs.items():
        if spec.kind == "modelsim":
            continue
        labels = {"namespace": NAMESPACE, "pod": f"{RELEASE}-{name}-0"}
        jobs.append(
            {
                "job_name": f"{RELEASE}-{name}",
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_INTERVAL,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [metrics_address(spec)], "labels": labels}],
            }
        )
    return jobs


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> dict[str, Any]:
        """The `data` of an instant query; raises AssertionError with Prometheus' error."""
        resp = httpx.post(f"{self.url}/api/v1/query", data={"query": expr}, timeout=10)
        body = resp.json()
        if body.get("status") != "success":
            raise AssertionError(f"{body.get('errorType')}: {body.get('error')}")
        return dict(body["data"])

    def targets_up(self) -> dict[str, str]:
        """Scrape job -> health of its target."""
        body = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()
        return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}


@contextmanager
def running_prometheus(
    jobs: list[dict[str, Any]], *, rule_files: Mapping[str, str] | None = None
) -> Iterator[Prometheus]:
    """Prometheus on a free port with these scrape jobs, stopped at the end."""
    exe = binary("prometheus")
    folder = Path(tempfile.mkdtemp(prefix="relay-prometheus-"))
    try:
        config: dict[str, Any] = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
            "scrape_configs": jobs,
        }
        if rule_files:
            for name, text in rule_files.items():
                (folder / name).write_text(text)
            config["rule_files"] = [str(folder / name) for name in rule_files]
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = (folder / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc, folder / "prometheus.log")
            yield Prometheus(url)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"prometheus not ready in 30 s: {log.read_text()[-2000:]}")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
