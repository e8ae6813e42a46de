"""A small Dockerfile reader: enough to check the images' structure offline.

Handles comments, line continuations, ARG defaults (which may name an earlier
ARG) and build arguments
(`--build-arg`) substituted where the stage declares them, stage names, the
exec (JSON) form of ENTRYPOINT/CMD, and `ln -s` links an entry point may go
through. Not a full parser (no heredocs, no escape directive): the project's
Dockerfile does not use them.

One Dockerfile at the repository root builds every service's image, chosen by
`--build-arg SERVICE=<name>`; `service_dockerfile(name)` reads it as that
build would.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.chart import REPO

SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml"))
DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)
    arg_defaults: dict[str, str] = field(default_factory=dict)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def command(self) -> list[str]:
        """ENTRYPOINT + CMD of the final stage, both in exec form, the program
        named as the link it goes through points (`relay-service` -> `relay-x`)."""
        argv: list[str] = []
        for keyword in ("ENTRYPOINT", "CMD"):
            values = self.final.args(keyword)
            if values:
                argv += json.loads(values[-1])
        if argv:
            argv[0] = self.links().get(argv[0], argv[0])
        return argv

    def links(self) -> dict[str, str]:
        """Symbolic links made by `ln -s TARGET PATH` in RUN steps: basename -> target."""
        found: dict[str, str] = {}
        for stage in self.stages:
            for command in stage.args("RUN"):
                words = shlex.split(command)
                for i, word in enumerate(words[:-3]):
                    if word == "ln" and words[i + 1] in ("-s", "-sf", "-fs"):
                        found[Path(words[i + 3]).name] = words[i + 2]
        return found


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def _substitute(text: str, args: dict[str, str]) -> str:
    """Replace $NAME / ${NAME} by ARG defaults (what the build would see by default)."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def parse(path: Path, build_args: Mapping[str, str] | None = None) -> Dockerfile:
    """`path` as a build with these `--build-arg`s sees it. As in Docker, an ARG
    is substituted only in the stage that declares it (or, before the first
    FROM, in FROM lines): an undeclared one stays `${NAME}` in the text."""
    given = dict(build_args or {})
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = [w for w in shlex.split(rest) if not w.startswith("--platform")]
            base = _substitute(words[0], global_args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            # a default may name an ARG declared before it (BUILDER_IMAGE=${PYTHON_IMAGE})
            global_args[key] = given.get(key, _substitute(default, global_args))
        elif stages:
            if keyword == "ARG":
                key, sep, default = rest.partition("=")
                inherited = (
                    _substitute(default, stages[-1].arg_defaults)
                    if sep
                    else global_args.get(key, "")
                )
                stages[-1].arg_defaults[key] = given.get(key, inherited)
            stages[-1].instructions.append((keyword, _substitute(rest, stages[-1].arg_defaults)))
    return Dockerfile(path=path, global_args=global_args, stages=stages)


def service_dockerfile(service: str) -> Dockerfile:
    """The Dockerfile as `docker build --build-arg SERVICE=<service> .` reads it."""
    return parse(DOCKERFILE, {"SERVICE": service})
