"""The chart refuses unsafe configurations with a message that says what to fix.

Guards live in the templates (`fail`/`required`) and in values.schema.json;
these tests pin them, together with the behaviours the policies rely on: the
config checksum moves with the config, and skaffold's image override wins.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest

from tests.deploy.chart import render_values
from tests.deploy.crds import cel_rules

KEDA_ON = {
    "keda": {"enabled": True, "prometheus": {"serverAddress": "http://prom:9090"}},
    "redis": {"external": {"address": "redis:6379"}},
}

REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "inline secret in settings": (
        {"gateway": {"env": {"RELAY_INTERNAL_TOKEN": "x"}}},
        "RELAY_INTERNAL_TOKEN",
    ),
    "inline secret in extraEnv": (
        {
            "state": {
                "extraEnv": [{"name": "RELAY_DATABASE_URL", "value": "postgresql://u:p@db/relay"}]
            }
        },
        "extraEnv",
    ),
    "typo in a component block": ({"gateway": {"replicas": 3}}, "replicas"),
    "writable root filesystem": (
        {"containerSecurityContext": {"readOnlyRootFilesystem": False}},
        "readOnlyRootFilesystem",
    ),
    "unpinned database image": ({"redis": {"enabled": True, "image": {"tag": "latest"}}}, "tag"),
    "grace not above drain": (
        {
            "runnerBackground": {
                "env": {"RELAY_DRAIN_TIMEOUT_S": "120"},
                "terminationGracePeriodSeconds": 120,
            }
        },
        "must be greater than RELAY_DRAIN_TIMEOUT_S",
    ),
    "KEDA without a Redis address": ({"keda": {"enabled": True}}, "redis.external.address"),
    "KEDA gateway without Prometheus": (
        {"keda": {"enabled": True}, "redis": {"external": {"address": "redis:6379"}}},
        "keda.prometheus.serverAddress",
    ),
    "runner target above concurrency": (
        {**KEDA_ON, "runnerInteractive": {"autoscaling": {"keda": {"targetRunsPerReplica": 12}}}},
        "RELAY_RUNNER_CONCURRENCY",
    ),
    "interactive target at concurrency": (
        {**KEDA_ON, "runnerInteractive": {"autoscaling": {"keda": {"targetRunsPerReplica": 8}}}},
        "never grow",
    ),
    "HPA scaled to zero": ({"runnerBackground": {"autoscaling": {"minReplicas": 0}}}, "needs KEDA"),
    "HPA minimum above maximum": (
        {"gateway": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}},
        r"gateway.autoscaling.minReplicas \(5\) must be less than or equal to maxReplicas \(3\)"
        r": the HorizontalPodAutoscaler would be refused",
    ),
    "ScaledObject minimum above maximum": (
        {**KEDA_ON, "runnerBackground": {"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}},
        r"runnerBackground.autoscaling.minReplicas \(4\) must be less than or equal to "
        r"maxReplicas \(2\): the ScaledObject would be refused \(KEDA: minReplicaCount must be "
        r"less than or equal to maxReplicaCount\)",
    ),
    "no Secret named": ({"secrets": {"existingSecret": ""}}, "secrets.existingSecret"),
}


# Every CEL rule of the vendored KEDA CRDs (by its message) -> the REFUSED case
# whose values break it: an API server refuses such an object at install time,
# the chart refuses it at render time with a message naming the value.
CEL_GUARDS = {
    "minReplicaCount must be less than or equal to maxReplicaCount": (
        "ScaledObject minimum above maximum"
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(case: str) -> None:
    values, message = REFUSED[case]
    with pytest.raises(helm.HelmError, match=message):
        render_values(values)


def test_every_crd_cel_rule_has_a_render_time_guard() -> None:
    """A KEDA update that adds a CEL rule fails here until the chart guards it."""
    assert {rule.message for rule in cel_rules()} == set(CEL_GUARDS)
    for message, case in CEL_GUARDS.items():
        assert re.sub(r"\\", "", REFUSED[case][1]).endswith(f"{message})")


def test_replica_bounds_at_the_limit_render() -> None:
    """Equal bounds are valid for both owners (the guards are not off by one)."""
    same = {"minReplicas": 3, "maxReplicas": 3}
    rendered = render_values({**KEDA_ON, "gateway": {"autoscaling": same},
                              "runnerBackground": {"autoscaling": same}})  # fmt: skip
    scaled = rendered.get("ScaledObject", "relay-runner-background")["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (3, 3)
    hpa = render_values({"gateway": {"autoscaling": same}}).get(
        "HorizontalPodAutoscaler", "relay-gateway"
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 3)


def _checksum(values: dict[str, Any], deployment: str) -> str:
    pod = render_values(values).get("Deployment", deployment)["spec"]["template"]
    return pod["metadata"]["annotations"]["checksum/config"]


def test_config_change_rolls_only_the_pods_that_read_it() -> None:
    base = _checksum({}, "relay-runner-background")
    assert _checksum({"config": {"logLevel": "DEBUG"}}, "relay-runner-background") != base
    assert (
        _checksum(
            {"runnerBackground": {"env": {"RELAY_STEP_BUDGET": "30"}}}, "relay-runner-background"
        )
        != base
    )
    gateway = _checksum({}, "relay-gateway")
    assert (
        _checksum({"runnerBackground": {"env": {"RELAY_STEP_BUDGET": "30"}}}, "relay-gateway")
        == gateway
    )


def test_image_reference_forms() -> None:
    ref = "registry.example.com/relay-gateway:abc@sha256:" + "0" * 64
    rendered = render_values(
        {
            "global": {"imageRegistry": "mirror.example.com/relay"},
            "gateway": {"image": {"fullName": ref}},
            "events": {"image": {"tag": "1.2.3", "digest": "sha256:" + "1" * 64}},
        }
    )
    image = {
        name: rendered.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["image"]
        for name in ("relay-gateway", "relay-events", "relay-state")
    }
    assert image["relay-gateway"] == ref
    assert image["relay-events"] == "mirror.example.com/relay/relay-events:1.2.3@sha256:" + "1" * 64
    assert image["relay-state"] == "mirror.example.com/relay/relay-state:0.1.0"


def test_runner_grace_follows_the_drain_timeout() -> None:
    rendered = render_values({"runnerInteractive": {"env": {"RELAY_DRAIN_TIMEOUT_S": "100"}}})
    spec = rendered.get("Deployment", "relay-runner-interactive")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 115
