"""Every rendered object validates: built-in kinds strictly, KEDA kinds against its CRDs.

kubernetes-validate strict mode (unknown fields are errors) runs against the
oldest Kubernetes it supports (the chart's kubeVersion floor) and the newest it
knows. It passes CRD kinds silently, so ScaledObject and TriggerAuthentication
are validated against KEDA's vendored CRD schemas (tests/deploy/fixtures/keda),
closed so that unknown fields fail as they would with strict field validation,
and against the CRDs' CEL rules (tests/deploy/crds.py).
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from tests.deploy.chart import REPO, Render
from tests.deploy.crds import KEDA_KINDS, cel_errors, keda_errors

K8S_VERSIONS = (kv_utils.all_versions()[0], kv_utils.latest_version())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_objects_validate_strictly(render: Render, version: str) -> None:
    errors = []
    for obj in render.objects:
        if obj["kind"] in KEDA_KINDS:
            continue
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kv_utils.ValidationError as exc:
            errors.append(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kv_utils.SchemaNotFoundError:
            errors.append(f"{name}: kind unknown to Kubernetes {version} (unvalidated)")
    assert not errors, "\n".join(errors)


def test_keda_objects_validate_against_crds(render: Render) -> None:
    errors = [e for obj in render.objects if obj["kind"] in KEDA_KINDS for e in keda_errors(obj)]
    assert not errors, "\n".join(errors)


def test_keda_example_validates() -> None:
    example = yaml.safe_load((REPO / "deploy/keda/triggerauthentication-example.yaml").read_text())
    assert keda_errors(example) == []


def test_crd_validation_rejects_unknown_and_missing_fields() -> None:
    """The closed CRD schema is not a rubber stamp."""
    bad = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "bad"},
        "spec": {
            "scaleTargetRef": {"name": "x"},
            "triggers": [{"type": "redis-streams", "metadata": {"stream": "s"}, "lagcount": "5"}],
            "maxReplicas": 3,
        },
    }
    errors = "\n".join(keda_errors(bad))
    assert "lagcount" in errors and "maxReplicas" in errors
    missing = {**bad, "spec": {"scaleTargetRef": {"name": "x"}}}
    assert any("triggers" in e for e in keda_errors(missing))


def test_cel_rules_are_evaluated() -> None:
    """The CEL check is not a rubber stamp: KEDA's min/max rule fires, with its message."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": "x"},
        "minReplicaCount": 5,
        "maxReplicaCount": 3,
        "triggers": [{"type": "cpu", "metadata": {"value": "50"}}],
    }
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    assert cel_errors(scaled) == [
        "ScaledObject/bad: spec: minReplicaCount must be less than or equal to maxReplicaCount"
    ]
    del spec["maxReplicaCount"]  # KEDA's default maximum is 100
    assert cel_errors(scaled) == []
    spec["minReplicaCount"] = 101
    assert len(cel_errors(scaled)) == 1
