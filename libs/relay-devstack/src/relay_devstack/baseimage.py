"""The base image of Relay's images: the pinned upstream one, or one built here.

The Dockerfile's default base (`ARG PYTHON_IMAGE`, python:3.11-slim-bookworm
pinned by digest) is used when it is present or can be pulled. When no
registry can be reached, a Debian bookworm base with Python 3.11 from Debian
is built with `mmdebstrap` and imported instead, and `make images` says so.

Why this recipe (measured: ~98 MB, against ~225 MB for `--variant=minbase`
with python3-venv): `essential` has no apt; the merged-/usr hook replaces the
`usrmerge` package, which pulls in ~50 MB of Perl; documentation, manual
pages and translations are left out; `python3.11-minimal` +
`libpython3.11-stdlib` is the interpreter and its standard library without
pip or venv (uv creates the image's virtual environment without them);
`passwd` gives the Dockerfile its `useradd`; `ca-certificates` lets the
services verify TLS; `libstdc++6` is what the C++ in some wheels links to
(protobuf's upb, frozenlist): without it they fell back to pure Python,
quietly (the containers test imports every native module of each image).

The builder stage's image (`ARG BUILDER_IMAGE`) is, for that local base, the
same recipe plus `binutils`: its `strip` takes 24-34 MB of symbols and debug
information out of each image's native extensions; binutils stays out of the
runtime image (which copies only the venv). Same recipe, so the venv's
interpreter symlink (/usr/bin/python3.11) is valid in the runtime image. For
any other base the builder is the base itself, stripping only if it has strip.

Each image is named after a hash of its own recipe and reused while it exists,
so only the first `make images` on a machine pays for the Debian downloads
(measured: ~30 s each for the base and the builder; `podman rmi` both to
rebuild with newer Debian packages).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relay_devstack.containers import Engine, EngineError

logger = logging.getLogger(__name__)

SUITE = "bookworm"
PACKAGES = (
    "python3.11-minimal",
    "libpython3.11-stdlib",
    "ca-certificates",
    "passwd",
    "libstdc++6",
)
EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")
IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3.11"]',
)
LOCAL_REPOSITORY = "localhost/relay-python-base"
LOCAL_BUILDER_REPOSITORY = "localhost/relay-python-builder"
MIRROR_VARIABLE = "RELAY_BASE_MIRROR"
PULL_TIMEOUT_S = 300


@dataclass(frozen=True)
class Base:
    """The base image a build uses and where it came from."""

    ref: str
    source: str  # "upstream" (the Dockerfile's pinned image) or "debian-local"
    note: str


@dataclass(frozen=True)
class Builder:
    """The image of the Dockerfile's builder stage, and whether it can strip."""

    ref: str
    strips: bool
    note: str


@dataclass(frozen=True)
class Recipe:
    """A Debian image built here with mmdebstrap: `essential` plus `packages`."""

    repository: str
    packages: tuple[str, ...]

    def spec(self) -> dict[str, object]:
        return {
            "suite": SUITE,
            "variant": "essential",
            "packages": self.packages,
            "excluded": EXCLUDED,
            "merged_usr": True,
            "changes": IMAGE_CHANGES,
        }

    @property
    def ref(self) -> str:
        """Named after the hash of the recipe: a changed recipe is a new image."""
        spec = json.dumps(self.spec(), sort_keys=True).encode()
        return f"{self.repository}:3.11-{SUITE}-{hashlib.sha256(spec).hexdigest()[:12]}"

    def mmdebstrap_argv(self, tarball: Path, mirror: str | None) -> list[str]:
        argv = ["mmdebstrap", "--variant=essential", f"--include={','.join(self.packages)}"]
        if MERGED_USR_HOOK.is_dir():
            argv.append(f"--hook-dir={MERGED_USR_HOOK}")
        argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDED]
        argv += [SUITE, str(tarball)]
        if mirror:
            argv.append(mirror)
        return argv


BASE_RECIPE = Recipe(LOCAL_REPOSITORY, PACKAGES)
# The base's packages plus binutils: the same python3.11 at the same path.
BUILDER_RECIPE = Recipe(LOCAL_BUILDER_REPOSITORY, (*PACKAGES, "binutils"))


def qualified(ref: str) -> str:
    """`python:3.11` -> `docker.io/library/python:3.11`: what docker means by a short
    name, spelled out for podman (whose short-name resolution depends on the host)."""
    name = ref.split("@", 1)[0].split(":", 1)[0]
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if "/" in name else f"docker.io/library/{ref}"


def dockerfile_default(dockerfile: Path, arg: str) -> str:
    """The default of a global `ARG NAME=value` of the Dockerfile (its one source)."""
    for line in dockerfile.read_text().splitlines():
        match = re.fullmatch(rf"ARG\s+{re.escape(arg)}=(\S+)\s*", line)
        if match:
            return match.group(1)
    raise ValueError(f"{dockerfile} declares no ARG {arg}=<default>")


def build_local(engine: Engine, recipe: Recipe, *, work_dir: Path) -> str:
    """Build (or reuse) the Debian image of `recipe`; its reference."""
    ref = recipe.ref
    if engine.image_exists(ref):
        return ref
    if not shutil.which("mmdebstrap"):
        raise EngineError(
            "no registry reachable and no mmdebstrap to build a base image: "
            "apt-get install mmdebstrap (or set RELAY_BASE_IMAGE to an image you have)"
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        argv = recipe.mmdebstrap_argv(tarball, os.environ.get(MIRROR_VARIABLE) or None)
        logger.info("building %s: %s", ref, " ".join(argv))
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise EngineError(f"mmdebstrap failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        changes = [arg for change in IMAGE_CHANGES for arg in ("--change", change)]
        engine.run("import", *changes, str(tarball), ref, timeout_s=600)
    return ref


def try_pull(engine: Engine, ref: str) -> str | None:
    """None when the image is here or was pulled; else why it could not be."""
    if engine.image_exists(ref):
        return None
    try:
        proc = engine.run("pull", "--quiet", ref, check=False, timeout_s=PULL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"pull timed out after {PULL_TIMEOUT_S}s"
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


def resolve_base(
    engine: Engine,
    *,
    dockerfile: Path,
    work_dir: Path,
    choice: str,
    announce: Callable[[str], None] = lambda _: None,
) -> Base:
    """The base for this build. `choice`: an image reference, or "auto" (the pinned
    upstream image, else the local Debian one), "upstream" or "debian". What is
    chosen, and why, is announced before a base is built (that takes a minute)."""
    if choice not in ("auto", "upstream", "debian"):
        return Base(ref=choice, source="given", note=f"base image {choice} (RELAY_BASE_IMAGE)")
    pinned = qualified(dockerfile_default(dockerfile, "PYTHON_IMAGE"))
    if choice != "debian":
        why = try_pull(engine, pinned)
        if why is None:
            return Base(ref=pinned, source="upstream", note=f"base image {pinned}")
        if choice == "upstream":
            raise EngineError(f"cannot pull the base image {pinned}: {why}")
        note = (
            f"the registry is unreachable ({why}): FALLING BACK to a Debian {SUITE} base "
            f"built here with mmdebstrap (Python 3.11 from Debian), {BASE_RECIPE.ref}"
        )
    else:
        note = f"base image built here with mmdebstrap (Debian {SUITE}, Python 3.11 from Debian)"
    announce(f"images: {note}")
    ref = build_local(engine, BASE_RECIPE, work_dir=work_dir)
    return Base(ref=ref, source="debian-local", note=note)


def has_strip(engine: Engine, ref: str) -> bool:
    """Whether image `ref` has a `strip` on PATH (asked by running it, no network;
    an engine that cannot run it is an error, not a "no")."""
    probe = "command -v strip || true"
    return bool(
        engine.output("run", "--rm", "--network", "none", "--entrypoint", "sh", ref, "-c", probe)
    )


def resolve_builder(engine: Engine, base: Base, *, work_dir: Path) -> Builder:
    """The builder stage's image: for the Debian base built here, its recipe plus
    binutils (built once, then reused); for any other base, the base itself. Whether
    it can strip is asked of the image, so the note says what the build will do."""
    if base.source == "debian-local":
        ref = build_local(engine, BUILDER_RECIPE, work_dir=work_dir)
    else:
        ref = base.ref
    if has_strip(engine, ref):
        note = f"builder image {ref}: native extensions stripped (strip --strip-unneeded)"
        return Builder(ref=ref, strips=True, note=note)
    note = (
        f"builder image {ref} has NO strip (binutils): native extensions left unstripped "
        "(up to ~35 MB more per image)"
    )
    return Builder(ref=ref, strips=False, note=note)
