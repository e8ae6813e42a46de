"""The chart renders and lints strictly for every values file of the ci/ matrix.

The matrix (deploy/helm/relay/ci/) is the chart's test: defaults, a
production-like install, one on a managed Redis Cluster, autoscaling off, and
the quickstart with modelsim and the in-chart databases. Who owns each
workload's replica count differs between them, so the expected owners are
spelled out here.
"""

from __future__ import annotations

import json

import helm_python as helm
import jsonschema
import pytest
from kubernetes_validate import utils as kv_utils

from tests.deploy.chart import CHART_DIR, CI_VALUES_FILES, Render, load_chart, load_values

DEPLOYMENTS = ["gateway", "events", "state", "runner-interactive", "runner-background"]

# values file -> {component: owner of its replica count}
EXPECTED_OWNERS = {
    "default-values.yaml": dict.fromkeys(DEPLOYMENTS, "HorizontalPodAutoscaler"),
    "autoscaling-off-values.yaml": dict.fromkeys(DEPLOYMENTS, "replicas"),
    "production-values.yaml": {
        "gateway": "ScaledObject",
        "events": "ScaledObject",
        "state": "HorizontalPodAutoscaler",
        "runner-interactive": "ScaledObject",
        "runner-background": "ScaledObject",
    },
    "cluster-values.yaml": {
        "gateway": "ScaledObject",
        "events": "ScaledObject",
        "state": "HorizontalPodAutoscaler",
        "runner-interactive": "ScaledObject",
        "runner-background": "ScaledObject",
    },
    "quickstart-values.yaml": {
        "gateway": "HorizontalPodAutoscaler",
        "events": "HorizontalPodAutoscaler",
        "state": "HorizontalPodAutoscaler",
        "runner-interactive": "ScaledObject",
        "runner-background": "ScaledObject",
        "modelsim": "replicas",
    },
}


def test_ci_matrix_is_complete() -> None:
    assert set(CI_VALUES_FILES) == set(EXPECTED_OWNERS)


@pytest.mark.parametrize("values_file", CI_VALUES_FILES)
def test_lint_strict(values_file: str) -> None:
    oldest = f"v{kv_utils.all_versions()[0]}"
    report = helm.lint(CHART_DIR, load_values(values_file), strict=True, kube_version=oldest)
    # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
    findings = [m for m in report["messages"] if m["severity"] >= 2]
    assert not findings and not report["errors"], report


def test_values_schema_is_valid_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(load_chart().values)


def test_renders_every_component(render: Render) -> None:
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"] for d in render.of_kind("Deployment")
    }
    expected = set(EXPECTED_OWNERS[render.values_file])
    assert deployments == expected
    assert "helm test" in render.notes


def test_replica_count_owners(render: Render) -> None:
    owners = {}
    for deployment in render.of_kind("Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        name = deployment["metadata"]["name"]
        scalers = [
            o["kind"]
            for o in render.objects
            if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
            and o["spec"]["scaleTargetRef"]["name"] == name
        ]
        owners[component] = (
            scalers[0] if len(scalers) == 1 else ("replicas" if not scalers else scalers)
        )
    assert owners == EXPECTED_OWNERS[render.values_file]


def test_migrations_run_before_the_new_code(render: Render) -> None:
    """External Postgres: a pre-install/pre-upgrade hook Job; in-chart: an init container."""
    jobs = [j for j in render.of_kind("Job") if j["metadata"]["name"].endswith("state-migrate")]
    state = render.get("Deployment", "relay-state")
    init = state["spec"]["template"]["spec"].get("initContainers") or []
    if render.values.get("postgres", {}).get("enabled"):
        assert not jobs
        assert [c["args"] for c in init] == [["migrate"]]
    else:
        (job,) = jobs
        hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
        assert set(hooks) == {"pre-install", "pre-upgrade"}
        assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
        assert not init
