"""Which Relay package may import which, checked on the sources and manifests.

An image installs only the packages its service declares (`uv sync
--package`), while the workspace venv has all of them: an import of an
undeclared package works in every test and fails in the pod. So each
package imports only what it declares, and the declarations follow the
layering: services never depend on each other, relay-core depends on no
other Relay package, relay-agent only on relay-core (its wire contracts),
modelsim on nothing of Relay.
"""

from __future__ import annotations

import pytest

from tests.deploy.workspace import packages

NAMES = sorted(packages())


@pytest.mark.parametrize("name", NAMES)
def test_imports_only_what_it_declares(name: str) -> None:
    package = packages()[name]
    declared = {dep.replace("-", "_") for dep in package.deps}
    undeclared = package.relay_imports() - declared
    assert not undeclared, f"{name} imports {sorted(undeclared)} without declaring them"


def test_the_layering_of_the_declarations() -> None:
    pkgs = packages()
    assert {"relay-core", "relay-agent", "relay-devstack", "relay-runner"} <= set(pkgs)
    services = {n for n, p in pkgs.items() if p.kind == "services"}
    for name in services:
        assert not pkgs[name].deps & services, f"{name} depends on another service"
    assert pkgs["relay-core"].deps == set()
    assert pkgs["relay-agent"].deps == {"relay-core"}
    assert pkgs["relay-modelsim"].deps == set()
    libs_users = {n for n, p in pkgs.items() if "relay-agent" in p.deps}
    assert libs_users == {"relay-runner"}, "the agent loop runs in runners only"


def test_the_import_scan_sees_imports() -> None:
    """The scan is not vacuous: it finds what the runner is known to import."""
    assert {"relay_core", "relay_agent"} <= packages()["relay-runner"].relay_imports()
