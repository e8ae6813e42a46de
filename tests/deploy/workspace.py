"""The workspace's packages as their manifests declare them: names, Relay
dependencies, import names and sources, for the packaging tests."""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.deploy.chart import REPO


@dataclass(frozen=True)
class Package:
    name: str  # relay-agent
    path: Path  # libs/relay-agent
    deps: frozenset[str]  # the Relay packages it declares (relay-core, ...)

    @property
    def kind(self) -> str:
        return self.path.parent.name  # "libs" or "services"

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")

    def relay_imports(self) -> set[str]:
        """Every Relay package its sources import (top-level names, lazy imports too)."""
        found: set[str] = set()
        for source in (self.path / "src").rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                found |= {n.split(".")[0] for n in names if n.startswith("relay_")}
        return found - {self.module}


@cache
def packages() -> dict[str, Package]:
    out = {}
    for manifest in sorted(REPO.glob("*/*/pyproject.toml")):
        if manifest.parent.parent.name not in ("libs", "services"):
            continue
        project = tomllib.loads(manifest.read_text(encoding="utf-8"))["project"]
        deps = {re.match(r"[A-Za-z0-9_.-]+", d).group() for d in project.get("dependencies", [])}  # type: ignore[union-attr]
        relay = frozenset(d for d in deps if d.startswith("relay-"))
        out[project["name"]] = Package(project["name"], manifest.parent, relay)
    return out


def closure(name: str) -> set[str]:
    """The Relay packages `name` needs installed: its dependencies, theirs, and so on."""
    seen: set[str] = set()
    todo = list(packages()[name].deps)
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(packages()[dep].deps)
    return seen
