"""Render the Relay chart offline and hand the objects to the tests.

Rendering goes through helm-python-sdk (Helm's own Go engine, no helm binary),
so what is tested is what `helm install` would send. Renders are cached per
values file: every test module shares one render of each file.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from helm_python import _native as helm_native

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "deploy" / "helm" / "relay"
CI_DIR = CHART_DIR / "ci"
RELEASE = "relay"
NAMESPACE = "relay"

CI_VALUES_FILES = sorted(p.name for p in CI_DIR.glob("*.yaml"))


@dataclass
class Render:
    """One render of the chart: its values, objects (dicts) and NOTES.txt."""

    values_file: str
    values: dict[str, Any]
    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: str = ""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"{kind}/{name} not rendered from {self.values_file}")


@functools.cache
def load_chart() -> helm.Chart:
    return helm.Chart.load(CHART_DIR)


def load_values(values_file: str) -> dict[str, Any]:
    return yaml.safe_load((CI_DIR / values_file).read_text()) or {}


def _render(values: dict[str, Any], api_versions: Sequence[str]) -> dict[str, str]:
    """`Chart.render`, plus the API versions the cluster would serve.

    helm-python-sdk's `render` does not expose them, but its native render call
    takes `api_versions` (Helm's `--api-versions`, what `.Capabilities.APIVersions`
    reads); tests/deploy/test_keda_auto.py fails if that stops working.
    """
    if not api_versions:
        return load_chart().render(
            values=values, name=RELEASE, namespace=NAMESPACE, is_install=True
        )
    options = {"name": RELEASE, "namespace": NAMESPACE, "is_install": True,
               "api_versions": list(api_versions)}  # fmt: skip
    raw = load_chart()._raw()  # the chart handle the SDK's own render passes
    rendered = helm_native.call_string("helm_render", raw, json.dumps(values), json.dumps(options))
    manifests: dict[str, str] = json.loads(rendered)
    return manifests


def render_values(
    values: dict[str, Any], label: str = "<inline>", *, api_versions: Sequence[str] = ()
) -> Render:
    """Render with explicit values (raises helm.HelmError when the chart refuses).
    `api_versions`: what the cluster serves beyond the built-in kinds, e.g.
    ["keda.sh/v1alpha1"] for a cluster with KEDA."""
    manifests = _render(values, api_versions)
    result = Render(values_file=label, values=values)
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            result.notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                result.objects.append(doc)
    return result


@functools.cache
def render_file(values_file: str) -> Render:
    return render_values(load_values(values_file), label=values_file)
