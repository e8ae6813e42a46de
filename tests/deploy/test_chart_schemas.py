"""Every rendered object validates: built-in kinds strictly, KEDA kinds against its CRDs.

kubernetes-validate strict mode (unknown fields are errors) runs against the
oldest Kubernetes it supports (the chart's kubeVersion floor) and the newest it
knows. It passes CRD kinds silently, so ScaledObject and TriggerAuthentication
are validated against KEDA's vendored CRD schemas (tests/deploy/fixtures/keda),
closed so that unknown fields fail as they would with strict field validation.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from tests.deploy.chart import REPO, Render

K8S_VERSIONS = (kv_utils.all_versions()[0], kv_utils.latest_version())
KEDA_CRDS = Path(__file__).parent / "fixtures" / "keda"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def closed(schema: Any) -> Any:
    """The schema with additionalProperties: false wherever properties are listed."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if (
        result.get("type") == "object"
        and isinstance(result.get("properties"), dict)
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@functools.cache
def keda_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> validator, from the vendored CRDs."""
    validators = {}
    for path in sorted(KEDA_CRDS.glob("keda.sh_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = closed(version["schema"]["openAPIV3Schema"])
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def keda_errors(obj: dict) -> list[str]:
    validator = keda_validators().get((obj["apiVersion"], obj["kind"]))
    if validator is None:
        return [f"no vendored CRD for {obj['apiVersion']} {obj['kind']}"]
    return [
        f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


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
