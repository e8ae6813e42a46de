"""`make images`: build every service image from the repository's Dockerfile.

    python -m relay_devstack.images [--service gateway ...] [--tag dev]

Steps, each reused when nothing it depends on changed:
1. the container engine (relay_devstack.containers: podman, else docker);
2. the base image: the Dockerfile's pinned upstream image, or, when no
   registry answers, a Debian base built here (relay_devstack.baseimage), said
   loudly; `RELAY_BASE_IMAGE` forces one (`debian`, `upstream` or a reference);
   and the builder stage's image: for the Debian base, the same recipe plus
   binutils, whose `strip` shrinks the native extensions; said whether it can;
3. the wheelhouse: every locked wheel the images need, downloaded on the host
   with this machine's package-index configuration (relay_devstack.wheelhouse);
4. one `build` per service (`--build-arg SERVICE=<name>`, the base and builder
   images, the wheelhouse as the `wheelhouse` build context, no network),
   tagged `relay-<service>:<tag>`.

The references, image ids, sizes and timings are written to
`.relay/images/images.json`, which `make test-containers` reads to run exactly
these images.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from relay_devstack.baseimage import (
    Base,
    Builder,
    dockerfile_default,
    resolve_base,
    resolve_builder,
)
from relay_devstack.console import complain, say
from relay_devstack.containers import Engine, EngineError
from relay_devstack.wheelhouse import default_pip, make_wheelhouse, probe_target

BASE_VARIABLE = "RELAY_BASE_IMAGE"
MANIFEST = "images.json"


@dataclass
class Built:
    service: str
    ref: str
    id: str
    size_bytes: int
    build_s: float


def services_of(repo: Path) -> list[str]:
    return sorted(p.parent.name for p in (repo / "services").glob("*/pyproject.toml"))


def build_argv(
    *,
    service: str,
    ref: str,
    base: str,
    builder: str,
    wheelhouse: Path | None,
    dockerfile: Path,
    context: Path,
) -> list[str]:
    """The engine's `build` arguments for one service image (`builder`: the image of
    the builder stage, named even when it is the base)."""
    argv = [
        "build",
        "--file",
        str(dockerfile),
        "--build-arg",
        f"SERVICE={service}",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "--build-arg",
        f"BUILDER_IMAGE={builder}",
        "--tag",
        ref,
    ]
    if wheelhouse is not None:
        # Everything comes from the wheelhouse: the build needs no network at all,
        # nor tries apt for binutils (the Dockerfile's BINUTILS_FROM_APT).
        argv += ["--build-context", f"wheelhouse={wheelhouse}", "--network", "none"]
        argv += ["--build-arg", "BINUTILS_FROM_APT=no"]
    return [*argv, str(context)]


def build_one(engine: Engine, argv: list[str], *, service: str, log_path: Path) -> float:
    started = time.monotonic()
    proc = engine.run(*argv, check=False, timeout_s=1800)
    log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise EngineError(f"building relay-{service} failed (log: {log_path}):\n{tail}")
    return time.monotonic() - started


def build_all(
    engine: Engine, *, repo: Path, services: list[str], tag: str, base_choice: str
) -> tuple[Base, Builder, list[Built]]:
    state = repo / ".relay" / "images"
    state.mkdir(parents=True, exist_ok=True)
    dockerfile = repo / "Dockerfile"
    base = resolve_base(
        engine, dockerfile=dockerfile, work_dir=state, choice=base_choice, announce=say
    )
    if base.source != "debian-local":
        say(f"images: {base.note}")
    builder = resolve_builder(engine, base, work_dir=state)
    say(f"images: {builder.note}")
    target = probe_target(engine, base.ref)
    uv = str(repo / ".relay" / "tools" / "bin" / "uv")
    wheelhouse = make_wheelhouse(
        repo=repo,
        uv=uv,
        pip=default_pip(repo),
        services=services,
        target=target,
        uv_version=dockerfile_default(dockerfile, "UV_VERSION"),
        root=state,
        announce=say,
    )
    built = []
    for service in services:
        ref = f"relay-{service}:{tag}"
        argv = build_argv(
            service=service,
            ref=ref,
            base=base.ref,
            builder=builder.ref,
            wheelhouse=wheelhouse,
            dockerfile=dockerfile,
            context=repo,
        )
        seconds = build_one(engine, argv, service=service, log_path=state / f"build-{service}.log")
        size = engine.image_size(ref)
        built.append(Built(service, ref, engine.image_id(ref), size, round(seconds, 1)))
        say(f"images: relay-{service}:{tag}  {size / 1e6:6.1f} MB  built in {seconds:5.1f}s")
    return base, builder, built


def write_manifest(
    path: Path, engine: Engine, base: Base, builder: Builder, built: list[Built]
) -> None:
    data = {
        "engine": engine.name,
        "base": asdict(base),
        "builder": asdict(builder),
        "images": {b.service: asdict(b) for b in built},
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay-images", description=__doc__.split("\n")[0])
    parser.add_argument("--service", action="append", help="build only these (repeatable)")
    parser.add_argument("--tag", default="dev")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="repository root")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    logging.basicConfig(level=logging.INFO, format="images: %(message)s")
    services = args.service or services_of(repo)
    started = time.monotonic()
    try:
        engine = Engine.detect(state_dir=repo / ".relay")
        say(f"images: engine {engine.binary} (CONTAINERS_CONF={engine.env.get('CONTAINERS_CONF')})")
        base, builder, built = build_all(
            engine,
            repo=repo,
            services=services,
            tag=args.tag,
            base_choice=os.environ.get(BASE_VARIABLE, "auto"),
        )
    except EngineError as exc:
        complain(f"make images: {exc}")
        return 1
    manifest = repo / ".relay" / "images" / MANIFEST
    write_manifest(manifest, engine, base, builder, built)
    largest = max(b.size_bytes for b in built) / 1e6
    say(
        f"images: {len(built)} images in {time.monotonic() - started:.0f}s, largest "
        f"{largest:.0f} MB; written to {manifest.relative_to(repo)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
