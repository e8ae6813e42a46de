"""`keda.enabled: auto` (the default): KEDA where the cluster has it, HPAs elsewhere.

Rendered both ways: as `helm install` does against a cluster without KEDA, and
against one serving `keda.sh/v1alpha1` (Helm reads `.Capabilities.APIVersions`
from the cluster; here they are given to the render). A plain install on a
KEDA cluster must scale the runner pools on their queues, not on CPU.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.deploy.chart import Render, render_values
from tests.deploy.crds import KEDA_KINDS, keda_errors

KEDA_API = ["keda.sh/v1alpha1"]
EXTERNAL_REDIS = {"redis": {"external": {"address": "redis.example.internal:6379"}}}
QUICKSTART_DBS = {"redis": {"enabled": True}, "postgres": {"enabled": True}}


def owners(rendered: Render) -> dict[str, str]:
    """Deployment name -> "ScaledObject", "HorizontalPodAutoscaler" or "replicas"."""
    scalers = {
        o["spec"]["scaleTargetRef"]["name"]: o["kind"]
        for o in rendered.objects
        if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
    }
    return {
        d["metadata"]["name"]: scalers.get(d["metadata"]["name"], "replicas")
        for d in rendered.of_kind("Deployment")
    }


def keda_admitted_to_redis(rendered: Render) -> bool:
    policy = rendered.get("NetworkPolicy", "relay-redis")
    return any("namespaceSelector" in peer for peer in policy["spec"]["ingress"][0]["from"])


def test_auto_is_the_default() -> None:
    assert render_values({}).values == {}
    default_owners = owners(render_values({}))
    assert set(default_owners.values()) == {"HorizontalPodAutoscaler"}


def test_auto_without_keda_in_the_cluster_renders_hpas() -> None:
    rendered = render_values({**EXTERNAL_REDIS})
    assert set(owners(rendered).values()) == {"HorizontalPodAutoscaler"}
    assert not [o for o in rendered.objects if o["kind"] in KEDA_KINDS]
    assert "KEDA: not used (keda.enabled=auto: the cluster does not serve" in rendered.notes


def test_auto_with_keda_scales_the_runners_on_their_queues() -> None:
    rendered = render_values({**EXTERNAL_REDIS}, api_versions=KEDA_API)
    assert owners(rendered) == {
        "relay-gateway": "HorizontalPodAutoscaler",  # no Prometheus address: CPU
        "relay-events": "HorizontalPodAutoscaler",
        "relay-state": "HorizontalPodAutoscaler",
        "relay-runner-interactive": "ScaledObject",
        "relay-runner-background": "ScaledObject",
    }
    scaled = rendered.get("ScaledObject", "relay-runner-background")
    assert {t["type"] for t in scaled["spec"]["triggers"]} == {"redis-streams"}
    assert rendered.get("TriggerAuthentication", "relay-redis-auth")
    errors = [e for o in rendered.objects if o["kind"] in KEDA_KINDS for e in keda_errors(o)]
    assert not errors, errors
    assert "KEDA: used (keda.enabled=auto: the cluster serves keda.sh/v1alpha1)" in rendered.notes


def test_auto_with_keda_and_prometheus_scales_gateway_and_events_too() -> None:
    values = {**EXTERNAL_REDIS, "keda": {"prometheus": {"serverAddress": "http://prom:9090"}}}
    rendered = render_values(values, api_versions=KEDA_API)
    assert owners(rendered)["relay-gateway"] == "ScaledObject"
    assert owners(rendered)["relay-events"] == "ScaledObject"
    assert owners(rendered)["relay-state"] == "HorizontalPodAutoscaler"


def test_auto_with_keda_needs_a_redis_address_for_the_runners() -> None:
    """Silently falling back to CPU would be the failure KEDA is there to avoid."""
    with pytest.raises(helm.HelmError, match=r"redis.external.address .* keda.enabled=false"):
        render_values({}, api_versions=KEDA_API)


def test_auto_with_the_in_chart_redis_lets_keda_reach_it() -> None:
    with_keda = render_values({**QUICKSTART_DBS}, api_versions=KEDA_API)
    assert owners(with_keda)["relay-runner-background"] == "ScaledObject"
    assert keda_admitted_to_redis(with_keda)
    without = render_values({**QUICKSTART_DBS})
    assert owners(without)["relay-runner-background"] == "HorizontalPodAutoscaler"
    assert not keda_admitted_to_redis(without)


@pytest.mark.parametrize(
    ("enabled", "api_versions", "expected"),
    [
        (True, [], "ScaledObject"),
        (False, KEDA_API, "HorizontalPodAutoscaler"),
        ("auto", KEDA_API, "ScaledObject"),
        ("auto", [], "HorizontalPodAutoscaler"),
    ],
)
def test_true_and_false_still_force_it(
    enabled: Any, api_versions: list[str], expected: str
) -> None:
    keda = {"enabled": enabled, "prometheus": {"serverAddress": "http://prom:9090"}}
    rendered = render_values({**EXTERNAL_REDIS, "keda": keda}, api_versions=api_versions)
    assert set(owners(rendered).values()) - {"HorizontalPodAutoscaler"} <= {expected}
    assert owners(rendered)["relay-runner-background"] == expected


def test_only_true_false_or_auto() -> None:
    with pytest.raises(helm.HelmError, match="keda"):
        render_values({"keda": {"enabled": "yes"}})
