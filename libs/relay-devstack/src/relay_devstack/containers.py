"""The container engine behind `make images` and `make test-containers`.

    engine = Engine.detect(state_dir=REPO / ".relay")
    engine.run("image", "exists", "relay-gateway:dev", check=False)

Decisions:

- podman first, docker where podman is missing and a docker daemon answers;
  `RELAY_CONTAINER_ENGINE` names either (or a path) to choose. Both take the
  same command lines for what Relay does (build, run, inspect, network).
- podman reads its settings from the file `CONTAINERS_CONF` names. When the
  caller set none, a `containers.conf` is written under `.relay/containers/`
  and used: runtime `runc` when it is installed (Debian's default `crun`
  cannot set resource limits in some sandboxes, `setrlimit RLIMIT_NOFILE:
  Operation not permitted`) and explicit ulimits. `nofile` is this host's hard
  limit (capped at 1048576, what containerd gives pods): a container may not
  raise it above that, and the events service holds one descriptor per open
  stream. `nproc` counts per UID across every container of that UID.
- Values a container receives are never put on a command line (where `ps`
  and error messages would show them): `Engine.run(..., env=...)` hands them
  to the engine's own environment and the command line names them only
  (`--env NAME`), which podman and docker both read from there.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENGINE_VARIABLE = "RELAY_CONTAINER_ENGINE"
NOFILE_CAP = 1_048_576
NPROC = 4096

# Variables the engine itself reads: a container variable of that name must
# travel on the command line, not through the engine's environment.
ENGINE_OWN = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "USER", "SHELL", "PWD"})
ENGINE_OWN_PREFIXES = ("CONTAINERS_", "XDG_", "PODMAN_", "BUILDAH_", "DOCKER_", "STORAGE_")


class EngineError(RuntimeError):
    """No usable container engine, or an engine command failed; the message says which."""


def engine_reads(name: str) -> bool:
    """Whether the engine's own process reads variable `name`."""
    return name in ENGINE_OWN or name.startswith(ENGINE_OWN_PREFIXES)


def containers_conf_text(*, runtime: str | None, nofile: int, nproc: int = NPROC) -> str:
    """A containers.conf with explicit ulimits (and the OCI runtime, when named)."""
    lines = [
        "# Written by relay_devstack.containers for `make images` / `make test-containers`;",
        "# set CONTAINERS_CONF to use your own file instead.",
        "[containers]",
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]',
    ]
    if runtime:
        lines += ["", "[engine]", f'runtime = "{runtime}"']
    return "\n".join(lines) + "\n"


def host_nofile() -> int:
    """The hard limit of open files here: the most a container can be given."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NOFILE_CAP if hard == resource.RLIM_INFINITY else min(hard, NOFILE_CAP)


def write_containers_conf(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "containers.conf"
    runtime = "runc" if shutil.which("runc") or Path("/usr/sbin/runc").exists() else None
    text = containers_conf_text(runtime=runtime, nofile=host_nofile())
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


@dataclass
class Engine:
    """One container engine binary and the environment its commands run with."""

    binary: str
    env: dict[str, str] = field(default_factory=dict, repr=False)  # os.environ: never printed

    @property
    def name(self) -> str:
        return Path(self.binary).name

    @classmethod
    def detect(cls, *, state_dir: Path, environ: Mapping[str, str] | None = None) -> Engine:
        environ = dict(os.environ if environ is None else environ)
        chosen = environ.get(ENGINE_VARIABLE, "").strip()
        binary = shutil.which(chosen) if chosen else _default_engine()
        if not binary:
            wanted = f"{ENGINE_VARIABLE}={chosen} is not a program on PATH" if chosen else ""
            raise EngineError(
                wanted
                or "no container engine: install podman (Debian: apt-get install podman runc "
                "mmdebstrap catatonit aardvark-dns netavark) or start a docker daemon"
            )
        if Path(binary).name == "podman" and not environ.get("CONTAINERS_CONF"):
            environ["CONTAINERS_CONF"] = str(write_containers_conf(state_dir / "containers"))
        return cls(binary=binary, env=environ)

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout_s: float | None = 600,
        env: Mapping[str, str] | None = None,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run `<engine> args...`; EngineError with its stderr when `check` and it fails."""
        proc = subprocess.run(
            self.argv(*args),
            env={**self.env, **(env or {})},
            capture_output=capture,
            text=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            what = " ".join(args[:2])
            detail = (proc.stderr or proc.stdout or "").strip()[-2000:]
            raise EngineError(f"{self.name} {what} failed (exit {proc.returncode}): {detail}")
        return proc

    def output(self, *args: str, timeout_s: float | None = 120) -> str:
        return self.run(*args, timeout_s=timeout_s).stdout.strip()

    def image_exists(self, ref: str) -> bool:
        if self.name == "podman":
            return self.run("image", "exists", ref, check=False).returncode == 0
        return self.run("image", "inspect", ref, check=False).returncode == 0

    def image_size(self, ref: str) -> int:
        return int(self.output("image", "inspect", "--format", "{{.Size}}", ref))

    def image_id(self, ref: str) -> str:
        return self.output("image", "inspect", "--format", "{{.Id}}", ref)


def _default_engine() -> str | None:
    podman = shutil.which("podman")
    if podman:
        return podman
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0
    ):
        return docker
    return None
