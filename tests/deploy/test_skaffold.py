"""skaffold.yaml builds one image per service and deploys them through the chart.

skaffold is not installed here, so the file is checked for what would break a
`skaffold dev` silently: an artifact without a Dockerfile or built outside the
repository root, a chart component whose image skaffold does not override,
and profiles pointing at values files or scripts that do not exist. The image
overrides are then rendered through the chart to see each Deployment pick up
its own artifact.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.chart import CHART_DIR, REPO, load_chart, load_values, render_values
from tests.deploy.dockerfile import DOCKERFILE, SERVICES

SKAFFOLD = yaml.safe_load((REPO / "skaffold.yaml").read_text())
RELEASE = SKAFFOLD["deploy"]["helm"]["releases"][0]
TEMPLATE = re.compile(r"^\{\{\.IMAGE_FULLY_QUALIFIED_(\w+)\}\}$")


def artifact_of(template: str) -> str:
    match = TEMPLATE.match(template)
    assert match, f"not an IMAGE_FULLY_QUALIFIED template: {template}"
    return match.group(1)


def test_one_artifact_per_service_built_from_the_repo_root() -> None:
    """Each image from the one root Dockerfile, its service named by SERVICE."""
    artifacts = {a["image"]: a for a in SKAFFOLD["build"]["artifacts"]}
    assert set(artifacts) == {f"relay-{s}" for s in SERVICES}
    for service in SERVICES:
        artifact = artifacts[f"relay-{service}"]
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == "Dockerfile"
        assert (REPO / artifact["docker"]["dockerfile"]).resolve() == DOCKERFILE
        assert artifact["docker"]["buildArgs"] == {"SERVICE": service}


def test_every_chart_image_is_overridden_by_an_artifact() -> None:
    assert (REPO / RELEASE["chartPath"]).resolve() == CHART_DIR
    values = load_chart().values
    components = {k for k, v in values.items() if isinstance(v, dict) and "replicaCount" in v}
    artifacts = {a["image"].replace("-", "_") for a in SKAFFOLD["build"]["artifacts"]}
    overridden = {}
    for key, template in RELEASE["setValueTemplates"].items():
        component, _, field = key.partition(".")
        assert field == "image.fullName", key
        assert artifact_of(template) in artifacts, template
        overridden[component] = artifact_of(template)
    assert set(overridden) == components


def test_overrides_reach_the_deployments() -> None:
    values: dict[str, dict[str, Any]] = {}
    for key, template in RELEASE["setValueTemplates"].items():
        ref = f"registry.test/{artifact_of(template)}:t@sha256:{'a' * 64}"
        values[key.split(".")[0]] = {"image": {"fullName": ref}}
    values["modelsim"]["enabled"] = True
    rendered = render_values(values)
    for deployment in rendered.of_kind("Deployment"):
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        expected = "relay_runner" if component.startswith("runner") else f"relay_{component}"
        assert image.startswith(f"registry.test/{expected}:"), (component, image)


def test_profiles_point_at_files_that_exist() -> None:
    profiles = {p["name"]: p for p in SKAFFOLD["profiles"]}
    assert set(profiles) == {"local", "production"}
    for profile in profiles.values():
        for patch in profile["patches"]:
            if patch["path"].endswith("/valuesFiles"):
                for path in patch["value"]:
                    assert (REPO / path).is_file(), path
                    load_values((REPO / path).name)
            if patch["path"].endswith("/hooks"):
                for hook in patch["value"]["before"]:
                    assert (REPO / hook["host"]["command"][1]).is_file()
    local = next(p for p in profiles["local"]["patches"] if p["path"].endswith("/valuesFiles"))
    quickstart = load_values(local["value"][0].rsplit("/", 1)[-1])
    assert quickstart["modelsim"]["enabled"] and quickstart["redis"]["enabled"]
    assert quickstart["postgres"]["enabled"]


def test_keda_install_is_pinned_to_the_vendored_crds() -> None:
    header = (REPO / "deploy/keda/keda-values.yaml").read_text()
    note = (REPO / "tests/deploy/fixtures/keda/README.md").read_text()
    pinned = re.search(r"--version (\d+\.\d+\.\d+)", header)
    assert pinned, "deploy/keda/keda-values.yaml does not pin a KEDA chart version"
    assert f"v{pinned.group(1)}" in note
    assert yaml.safe_load(header)["crds"]["install"] is True
