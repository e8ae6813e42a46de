"""A wheelhouse for offline image builds, made on the host from uv.lock.

Why on the host: the package index is this machine's configuration (pip.conf,
PIP_* variables, local find-links folders, the CA of a TLS-inspecting proxy),
which a build container cannot see and which must not be copied into the
Dockerfile (measured on a sandbox whose proxy re-signs TLS: PyPI fails from
inside a build with "invalid peer certificate: UnknownIssuer"). So the host's own pip
downloads, with that configuration, exactly what uv.lock pins (versions and
hashes, `uv export`), for the image's platform; the build then installs with
`--no-index` from this folder (the Dockerfile's `wheelhouse` build context).

What goes in:
- every third-party wheel any service image needs, the union of
  `uv export --package relay-<service>`, each requirement's environment marker
  evaluated against the base image's own interpreter (asked by running it:
  Debian's python3.11 is 3.11.2, for which `async-timeout` is needed);
- the build backends of the workspace packages (`[build-system] requires`),
  with their dependencies, since the image builds those packages from source;
- the uv wheel of the version the Dockerfile installs.

The folder is named after a hash of all inputs (lock file, build requirements,
uv version, target platform), so a second `make images` reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import Marker

from relay_devstack.containers import Engine, EngineError

COMPLETE = ".complete"

# Run inside the base image: the marker environment (PEP 508) and the C library.
TARGET_SCRIPT = """
import json, os, platform, sys
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": platform.python_version(),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": "",
    "platform_system": platform.system(),
    "platform_version": "",
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
    "glibc": os.confstr("CS_GNU_LIBC_VERSION").split()[-1],
}))
"""


@dataclass(frozen=True)
class Requirement:
    name: str
    pin: str  # "name==version"
    marker: str | None
    hashes: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    """The interpreter and platform of the base image."""

    environment: dict[str, str] = field(hash=False)

    @property
    def python_version(self) -> str:
        return self.environment["python_version"]

    @property
    def abi(self) -> str:
        return "cp" + self.python_version.replace(".", "")

    def platforms(self) -> list[str]:
        """manylinux tags this interpreter accepts, newest first (pip expands none)."""
        machine = self.environment["platform_machine"]
        major, minor = (int(x) for x in self.environment["glibc"].split(".")[:2])
        tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)]
        return [*tags, f"manylinux2014_{machine}", f"linux_{machine}"]


def probe_target(engine: Engine, base: str) -> Target:
    out = engine.output(
        "run", "--rm", "--network", "none", "--entrypoint", "python3.11", base, "-c", TARGET_SCRIPT
    )
    return Target(environment=json.loads(out.splitlines()[-1]))


def parse_requirements(text: str) -> list[Requirement]:
    """Entries of a `uv export --format requirements-txt` file (hashes included)."""
    found: list[Requirement] = []
    entry = ""
    for raw in [*text.splitlines(), ""]:
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            entry += line[:-1] + " "
            continue
        entry += line
        if entry.strip():
            words = entry.split()
            hashes = tuple(w.removeprefix("--hash=") for w in words if w.startswith("--hash="))
            spec = " ".join(w for w in words if not w.startswith("--hash="))
            pin, _, marker = spec.partition(";")
            name = pin.split("==", 1)[0].strip().lower()
            found.append(Requirement(name, pin.strip(), marker.strip() or None, hashes))
        entry = ""
    return found


def needed(requirements: Sequence[Requirement], target: Target) -> list[Requirement]:
    """The requirements whose marker holds on the target, once each."""
    chosen: dict[str, Requirement] = {}
    for req in requirements:
        if req.marker is None or Marker(req.marker).evaluate(dict(target.environment)):
            chosen.setdefault(req.pin, req)
    return sorted(chosen.values(), key=lambda r: r.name)


def build_requires(repo: Path) -> list[str]:
    """`[build-system] requires` of every workspace package, once each."""
    found: set[str] = set()
    for manifest in sorted(repo.glob("*/*/pyproject.toml")):
        if manifest.parent.parent.name in ("libs", "services"):
            data = tomllib.loads(manifest.read_text())
            found.update(data.get("build-system", {}).get("requires", []))
    return sorted(found)


def export(uv: str, repo: Path, services: Sequence[str]) -> list[Requirement]:
    found: list[Requirement] = []
    for service in services:
        argv = [
            uv,
            "export",
            "--quiet",
            "--frozen",
            "--no-dev",
            "--no-emit-workspace",
            "--package",
            f"relay-{service}",
            "--format",
            "requirements-txt",
        ]
        proc = subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise EngineError(f"uv export for relay-{service} failed: {proc.stderr.strip()}")
        found += parse_requirements(proc.stdout)
    return found


def render(requirements: Sequence[Requirement]) -> str:
    lines = []
    for req in requirements:
        lines.append(" \\\n".join([req.pin, *(f"    --hash={h}" for h in req.hashes)]))
    return "\n".join(lines) + "\n"


def wheelhouse_key(repo: Path, target: Target, extras: Sequence[str]) -> str:
    digest = hashlib.sha256((repo / "uv.lock").read_bytes())
    digest.update(json.dumps([target.environment, list(extras)], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _pip_download(pip: Sequence[str], target: Target, dest: Path, args: Sequence[str]) -> None:
    platforms = [arg for tag in target.platforms() for arg in ("--platform", tag)]
    argv = [
        *pip,
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        "--only-binary=:all:",
        *platforms,
        "--python-version",
        target.python_version,
        "--implementation",
        "cp",
        "--abi",
        target.abi,
        *args,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=dict(os.environ))
    if proc.returncode != 0:
        raise EngineError(f"pip download failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def make_wheelhouse(
    *,
    repo: Path,
    uv: str,
    pip: Sequence[str],
    services: Sequence[str],
    target: Target,
    uv_version: str,
    root: Path,
    announce: Callable[[str], None] = lambda _: None,
) -> Path:
    """The wheelhouse folder for these inputs, downloaded unless already complete."""
    backends = build_requires(repo)
    key = wheelhouse_key(repo, target, [*backends, f"uv=={uv_version}", *services])
    dest = root / f"wheelhouse-{key}"
    if (dest / COMPLETE).exists():
        announce(f"wheelhouse {dest} (reused)")
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    requirements = needed(export(uv, repo, services), target)
    (dest / "requirements.txt").write_text(render(requirements))
    machine = target.environment["platform_machine"]
    announce(
        f"wheelhouse: {len(requirements)} locked packages for {target.abi} {machine}, "
        "downloaded with this machine's pip configuration"
    )
    locked = ["--no-deps", "--require-hashes", "--requirement", str(dest / "requirements.txt")]
    _pip_download(pip, target, dest, locked)
    _pip_download(pip, target, dest, [*backends, f"uv=={uv_version}"])
    (dest / COMPLETE).write_text(json.dumps({"key": key, "requirements": len(requirements)}))
    for old in root.glob("wheelhouse-*"):
        if old != dest:
            shutil.rmtree(old, ignore_errors=True)  # made for an older lock or base
    return dest


def default_pip(repo: Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """The bootstrap venv's pip (`make tools`), else `python3 -m pip`."""
    tools_pip = repo / ".relay" / "tools" / "bin" / "pip"
    if tools_pip.exists():
        return [str(tools_pip)]
    return ["python3", "-m", "pip"]
