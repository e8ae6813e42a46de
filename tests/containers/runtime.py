"""Running `podkit` plans with podman, and removing everything a run started.

Every container, volume and network carries the run's label
(`io.relay.test.run=<run id>`) and the test process id; `close()` removes what
carries the run's label, whatever happened before, and `sweep()` removes what
runs of processes that no longer exist left behind (a killed pytest).

A pod's steps mirror the kubelet's: volumes, ConfigMap/Secret files, init
containers one after the other (each must exit 0), then the containers.
Stopping mirrors it too: the `preStop` handler, then SIGTERM, then SIGKILL
when the grace period (counted from the start of preStop) runs out.

The podman command line, not podman-py: the Python binding talks to podman's
API service, which would have to be started and stopped around every run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from relay_devstack.containers import Engine, EngineError
from relay_devstack.procs import pid_alive
from tests.containers.podkit import RUN_LABEL, ContainerPlan, PodPlan

PID_LABEL = "io.relay.test.pid"


class ContainerFailed(RuntimeError):
    """A container exited or failed its probes; the message names it, why, and its log tail."""


@dataclass(frozen=True)
class Network:
    name: str
    subnet: str
    gateway: str


@dataclass(frozen=True)
class Stopped:
    exit_code: int
    seconds: float  # from the start of preStop to the exit
    killed: bool  # SIGKILLed at the end of the grace period


class Runtime:
    def __init__(self, engine: Engine, run_id: str, root: Path) -> None:
        self.engine = engine
        self.run_id = run_id
        self.root = root
        self.labels = ["--label", f"{RUN_LABEL}={run_id}", "--label", f"{PID_LABEL}={os.getpid()}"]
        self.network: Network | None = None

    # --- network -------------------------------------------------------------------

    def create_network(self) -> Network:
        name = self.run_id
        self.engine.run("network", "create", *self.labels, name)
        info = json.loads(self.engine.output("network", "inspect", name))[0]
        subnet = info["subnets"][0]
        self.network = Network(name=name, subnet=subnet["subnet"], gateway=subnet["gateway"])
        return self.network

    def hold_network(self, image: str) -> None:
        """A container that keeps the bridge (and its gateway address on this host) up,
        so servers on the host can listen on that address before any pod starts."""
        assert self.network is not None
        self.engine.run(
            "run",
            "--detach",
            "--name",
            f"{self.run_id}-network",
            *self.labels,
            "--network",
            self.network.name,
            "--read-only",
            "--cap-drop",
            "ALL",
            "--user",
            "65534:65534",
            "--entrypoint",
            "sleep",
            image,
            "infinity",
        )

    # --- pods ----------------------------------------------------------------------

    def start_pod(self, plan: PodPlan, *, init_timeout_s: float = 300) -> None:
        """Volumes and files, init containers to completion, then the containers (detached)."""
        for volume, options in plan.volumes.items():
            extra = ["--opt", "type=tmpfs", "--opt", "device=tmpfs"] if options["memory"] else []
            self.engine.run("volume", "create", *self.labels, *extra, volume)
        for path, (content, mode) in plan.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o755)  # noqa: S103 - the container's user reads them
            path.write_text(content)
            os.chmod(path, mode)
        for init in plan.init_containers:
            self.run(init)
            code = self.wait_exit(init, timeout_s=init_timeout_s)
            if code != 0:
                raise ContainerFailed(
                    f"{plan.owner}: init container {init.name} exited with "
                    f"code {code}:\n{self.logs(init)}"
                )
        for container in plan.containers:
            self.run(container)

    def run(self, container: ContainerPlan) -> None:
        self.engine.run(*container.argv, env=container.env, timeout_s=120)

    def run_to_completion(self, plan: PodPlan, *, timeout_s: float) -> tuple[int, str]:
        """A Job's or test Pod's one container: its exit code and log."""
        self.start_pod(plan)
        container = plan.container()
        code = self.wait_exit(container, timeout_s=timeout_s)
        return code, self.logs(container, tail=200)

    # --- state and signals ------------------------------------------------------------

    def inspect(self, container: ContainerPlan) -> dict:
        return json.loads(self.engine.output("container", "inspect", container.engine_name))[0]

    def ip(self, container: ContainerPlan) -> str:
        networks = self.inspect(container)["NetworkSettings"]["Networks"]
        return str(next(iter(networks.values()))["IPAddress"])

    def running(self, container: ContainerPlan) -> tuple[bool, int]:
        state = self.inspect(container)["State"]
        return bool(state["Running"]), int(state.get("ExitCode") or 0)

    def logs(self, container: ContainerPlan, tail: int = 30) -> str:
        proc = self.engine.run("logs", "--tail", str(tail), container.engine_name, check=False)
        return (proc.stdout + proc.stderr).strip()

    def wait_exit(self, container: ContainerPlan, *, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            running, code = self.running(container)
            if not running:
                return code
            time.sleep(0.2)
        raise ContainerFailed(
            f"{container.name} still running after {timeout_s:.0f}s:\n{self.logs(container)}"
        )

    def exec(
        self, container: ContainerPlan, argv: list[str], timeout_s: float = 30
    ) -> tuple[int, str]:
        proc = self.engine.run(
            "exec", container.engine_name, *argv, check=False, timeout_s=timeout_s
        )
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def kill(self, container: ContainerPlan, sig: signal.Signals = signal.SIGKILL) -> None:
        self.engine.run("kill", "--signal", sig.name, container.engine_name)

    def restart(self, container: ContainerPlan) -> None:
        """Start the same container again, as the kubelet restarts a container in its pod."""
        self.engine.run("start", container.engine_name)

    def stop(self, plan: PodPlan, container: ContainerPlan) -> Stopped:
        """preStop, then SIGTERM, then SIGKILL when the pod's grace period is over."""
        started = time.monotonic()
        hook = container.pre_stop
        if hook is not None and hook.kind == "exec":
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.exec(container, list(hook.command), timeout_s=plan.grace_s)
        elif hook is not None and hook.kind == "http":  # a kubelet ignores its failure too
            url = f"{hook.scheme.lower()}://{self.ip(container)}:{hook.port}{hook.path}"
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=plan.grace_s).close()  # noqa: S310
        left = max(1, int(plan.grace_s - (time.monotonic() - started)))
        self.engine.run("stop", "--time", str(left), container.engine_name, timeout_s=left + 60)
        seconds = time.monotonic() - started
        _, code = self.running(container)
        return Stopped(exit_code=code, seconds=seconds, killed=code == 128 + signal.SIGKILL)

    def remove_pod(self, plan: PodPlan) -> None:
        """Delete a pod's containers (at once) and volumes."""
        names = [c.engine_name for c in (*plan.init_containers, *plan.containers)]
        self.engine.run("rm", "--force", "--time", "0", *names, check=False, timeout_s=120)
        if plan.volumes:
            self.engine.run("volume", "rm", "--force", *plan.volumes, check=False)

    # --- clean-up ----------------------------------------------------------------------

    def close(self) -> None:
        remove(self.engine, f"{RUN_LABEL}={self.run_id}")
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def sweep(engine: Engine) -> None:
        """Remove what runs of dead test processes left behind."""
        runs = set()
        for what in (["ps", "--all"], ["volume", "ls"], ["network", "ls"]):
            out = engine.run(
                *what, "--filter", f"label={PID_LABEL}", "--format", "json", check=False
            ).stdout
            for item in json.loads(out or "[]"):
                labels = item.get("Labels") or item.get("labels") or {}
                pid = labels.get(PID_LABEL, "")
                if pid.isdigit() and not pid_alive(int(pid)):
                    runs.add(labels.get(RUN_LABEL))
        for run in sorted(r for r in runs if r):
            remove(engine, f"{RUN_LABEL}={run}")
        for folder in Path(tempfile.gettempdir()).glob("relay-rct-*-pid*-*"):
            pid = re.search(r"-pid(\d+)-", folder.name)
            if pid and not pid_alive(int(pid.group(1))):
                shutil.rmtree(folder, ignore_errors=True)  # a dead run's root folder

    @staticmethod
    def root_folder(run_id: str) -> Path:
        """A folder for a run's files, named so that `sweep` can tell when its process is gone."""
        folder = Path(tempfile.mkdtemp(prefix=f"relay-{run_id}-pid{os.getpid()}-"))
        os.chmod(folder, 0o755)  # noqa: S103 - Postgres runs as nobody under it when root
        return folder


def remove(engine: Engine, label: str) -> None:
    """Containers (killed at once), then volumes and networks carrying `label`."""
    ids = engine.run("ps", "--all", "--quiet", "--filter", f"label={label}", check=False)
    names = ids.stdout.split()
    if names:
        engine.run("rm", "--force", "--time", "0", *names, check=False, timeout_s=120)
    volumes = engine.run("volume", "ls", "--quiet", "--filter", f"label={label}", check=False)
    if volumes.stdout.split():
        engine.run("volume", "rm", "--force", *volumes.stdout.split(), check=False)
    networks = engine.run("network", "ls", "--quiet", "--filter", f"label={label}", check=False)
    for network in networks.stdout.split():
        engine.run("network", "rm", "--force", network, check=False)


__all__ = ["ContainerFailed", "EngineError", "Network", "Runtime", "Stopped", "remove"]
