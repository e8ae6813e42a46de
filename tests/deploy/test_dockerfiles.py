"""Each service image is multi-stage, pinned, non-root and built from the repo root.

One Dockerfile (the repository root's) builds every image, the service chosen
by `--build-arg SERVICE=<name>`. No container runtime runs here, so it is read
as each service's build would read it and checked for the properties the
chart relies on: a numeric non-root USER (the pods set runAsNonRoot),
bytecode compiled at build time (the root filesystem is read-only),
dependencies from uv.lock in their own cached layer, the shared libs/*
packages copied from the build context rather than duplicated, and the
service's own console script as the entry point.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy.chart import REPO
from tests.deploy.dockerfile import DOCKERFILE, SERVICES, service_dockerfile
from tests.deploy.workspace import closure, packages


def test_one_dockerfile_builds_every_service() -> None:
    """No near-copies per service: the root Dockerfile is the only one."""
    assert SERVICES == ["events", "gateway", "modelsim", "runner", "state"]
    assert DOCKERFILE.is_file()
    others = [p for p in REPO.glob("**/Dockerfile*") if ".venv" not in p.parts]
    assert others == [DOCKERFILE], others


@pytest.mark.parametrize("service", SERVICES)
def test_build_arguments_reach_every_stage_that_uses_them(service: str) -> None:
    """An ARG is visible only in the stage that declares it: a `${SERVICE}` left
    unexpanded would build `relay-` or copy `services/`."""
    for stage in service_dockerfile(service).stages:
        for keyword, rest in stage.instructions:
            assert not re.search(r"\$\{?SERVICE\b", rest), (stage.name, keyword, rest)


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_with_pinned_bases(service: str) -> None:
    dockerfile = service_dockerfile(service)
    assert len(dockerfile.stages) >= 2
    stage_names = {s.name for s in dockerfile.stages if s.name}
    for stage in dockerfile.stages:
        if stage.base in stage_names or stage.base == "scratch":  # scratch: the empty image
            continue
        assert "$" not in stage.base, f"unresolved ARG in FROM {stage.base}"
        name_and_tag, _, digest = stage.base.partition("@")
        tag = name_and_tag.rsplit("/", 1)[-1].partition(":")[2]
        assert tag != "latest" and (re.search(r"\d+\.\d+", tag) or digest), stage.base
        assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), stage.base


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_numeric_non_root_user(service: str) -> None:
    users = service_dockerfile(service).final.args("USER")
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) > 0), users[-1]


@pytest.mark.parametrize("service", SERVICES)
def test_read_only_root_filesystem_ready(service: str) -> None:
    dockerfile = service_dockerfile(service)
    final_env = " ".join(dockerfile.final.args("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in final_env
    build_text = " ".join(rest for s in dockerfile.stages[:-1] for _, rest in s.instructions)
    assert "UV_COMPILE_BYTECODE=1" in build_text or "compileall" in build_text


@pytest.mark.parametrize("service", SERVICES)
def test_dependencies_cached_before_sources(service: str) -> None:
    """Third-party dependencies exactly as locked (exported with their hashes from
    uv.lock, installed with --require-hashes) precede the source COPY; the
    workspace packages are synced from the lock after it."""
    dockerfile = service_dockerfile(service)
    builder = next(s for s in dockerfile.stages if any("uv sync" in r for _, r in s.instructions))
    steps = [(kw, rest) for kw, rest in builder.instructions if kw in ("RUN", "COPY")]
    source_copy = next(
        i for i, (kw, rest) in enumerate(steps) if kw == "COPY" and f"services/{service}" in rest
    )
    deps = next(i for i, (kw, rest) in enumerate(steps) if kw == "RUN" and "uv export" in rest)
    sync = next(i for i, (kw, rest) in enumerate(steps) if kw == "RUN" and "uv sync" in rest)
    assert deps < source_copy < sync
    export = steps[deps][1]
    for flag in ("--frozen", "--no-dev", "--no-emit-workspace", f"--package relay-{service}"):
        assert flag in export, flag
    assert "uv pip install" in export and "--require-hashes" in export
    assert all(f in steps[sync][1] for f in ("--frozen", "--no-dev", f"--package relay-{service}"))
    # uv itself: pinned, from the wheelhouse or the index.
    uv_step = next(
        rest for kw, rest in builder.instructions if kw == "RUN" and "uv --version" in rest
    )
    assert re.search(r"uv-\$\{UV_VERSION\}|uv==\$\{UV_VERSION\}|uv-\d|uv==\d", uv_step)
    assert re.fullmatch(r"\d+\.\d+\.\d+", builder.arg_defaults["UV_VERSION"])


def test_no_index_is_named() -> None:
    """The index is the machine's (a wheelhouse made on the host) or uv's default:
    the Dockerfile never names one."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"--(extra-)?index-url|UV_INDEX|PIP_INDEX|https?://", text)


def test_uv_version_matches_the_makefile() -> None:
    """The host bootstraps the same uv the images build with (one lock-file format)."""
    makefile = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert makefile
    assert service_dockerfile("gateway").global_args.get("UV_VERSION", "") in (
        "",
        makefile.group(1),
    )
    builder = next(s for s in service_dockerfile("gateway").stages if s.name == "builder")
    assert builder.arg_defaults["UV_VERSION"] == makefile.group(1)


@pytest.mark.parametrize("service", SERVICES)
def test_shared_libs_come_from_the_build_context(service: str) -> None:
    """Every libs/* package the service needs is copied from the context (all of
    libs/, or that package), never vendored into the service's folder."""
    copies = [rest for s in service_dockerfile(service).stages for rest in s.args("COPY")]
    sources = {c.split()[-2] for c in copies if not c.startswith("--from")}
    needed = {dep for dep in closure(f"relay-{service}") if packages()[dep].kind == "libs"}
    for lib in needed:
        assert {"libs", "libs/", f"libs/{lib}"} & sources, f"{lib} is not copied"
        assert not (REPO / "services" / service / lib.replace("-", "_")).exists()


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_is_the_services_own_script(service: str) -> None:
    """ENTRYPOINT goes through a link made at build time to relay-<service>."""
    dockerfile = service_dockerfile(service)
    assert dockerfile.command() == [f"relay-{service}"]
    assert json.loads(dockerfile.final.args("ENTRYPOINT")[-1])[0] in dockerfile.links()


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for required in ("**/.venv", "**/.git", "**/__pycache__"):
        assert required in patterns
    for kept in ("libs", "services", "uv.lock", "pyproject.toml"):
        assert kept not in patterns
