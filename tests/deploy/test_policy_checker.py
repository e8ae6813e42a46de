"""Each policy check fires on a deliberately bad manifest.

A policy test that cannot fail proves nothing. A small compliant release (a
runner, a gateway and events behind an Ingress, state) passes every check;
each test below breaks one thing and asserts the matching check complains.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.deploy import policy

RELEASE = {"app.kubernetes.io/name": "relay", "app.kubernetes.io/instance": "relay"}
HARDENED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def labels(component: str) -> dict[str, str]:
    return {**RELEASE, "app.kubernetes.io/component": component}


def deployment(component: str, **pod: Any) -> dict[str, Any]:
    container = {
        "name": component,
        "image": f"relay-{component}:0.1.0",
        "envFrom": [{"configMapRef": {"name": f"relay-{component}"}}],
        "env": [
            {
                "name": "RELAY_REDIS_URL",
                "valueFrom": {"secretKeyRef": {"name": "relay-secrets", "key": "redis-url"}},
            }
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "management"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "management"}},
        "securityContext": dict(HARDENED),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    spec = {
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        **pod,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"relay-{component}", "labels": labels(component)},
        "spec": {
            "selector": {"matchLabels": labels(component)},
            "template": {
                "metadata": {
                    "labels": labels(component),
                    "annotations": {"checksum/config": "0" * 64},
                },
                "spec": spec,
            },
        },
    }


def simple(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, **meta}, "spec": spec}


def release() -> list[dict[str, Any]]:
    objects = []
    for component in ("gateway", "events", "state", "runner-background"):
        extra = {"terminationGracePeriodSeconds": 75} if component.startswith("runner") else {}
        objects.append(deployment(component, **extra))
        data = {"RELAY_PORT": "8080"}
        if component.startswith("runner"):
            data.update(RELAY_RUNNER_POOL="background", RELAY_DRAIN_TIMEOUT_S="60")
        objects.append(
            {"kind": "ConfigMap", "metadata": {"name": f"relay-{component}"}, "data": data}
        )
        objects.append(
            simple(
                "PodDisruptionBudget",
                f"relay-{component}",
                {"selector": {"matchLabels": labels(component)}, "maxUnavailable": 1},
            )
        )
        peers = [{"podSelector": {"matchLabels": RELEASE}}]
        if component in ("gateway", "events"):
            peers.append(
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                    }
                }
            )
        objects.append(
            simple(
                "NetworkPolicy",
                f"relay-{component}",
                {
                    "podSelector": {"matchLabels": labels(component)},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": peers}],
                },
            )
        )
        objects.append(simple("Service", f"relay-{component}", {"selector": labels(component)}))
    objects.append(
        simple(
            "HorizontalPodAutoscaler",
            "relay-gateway",
            {"scaleTargetRef": {"kind": "Deployment", "name": "relay-gateway"}},
        )
    )
    objects.append(
        simple(
            "Ingress",
            "relay",
            {
                "ingressClassName": "nginx",
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/v1/runs/[^/]+/events",
                                    "pathType": "ImplementationSpecific",
                                    "backend": {"service": {"name": "relay-events"}},
                                },
                                {
                                    "path": "/v1/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "relay-gateway"}},
                                },
                                {
                                    "path": "/healthz",
                                    "pathType": "Exact",
                                    "backend": {"service": {"name": "relay-gateway"}},
                                },
                            ]
                        }
                    }
                ],
            },
            annotations={
                "nginx.ingress.kubernetes.io/use-regex": "true",
                "nginx.ingress.kubernetes.io/proxy-buffering": "off",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
            },
        )
    )
    return objects


def find(objects: list[dict], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def container_of(objects: list[dict], component: str) -> dict[str, Any]:
    return find(objects, "Deployment", f"relay-{component}")["spec"]["template"]["spec"][
        "containers"
    ][0]


def test_the_compliant_release_passes_every_check() -> None:
    objects = release()
    for name, check in policy.ALL_CHECKS.items():
        assert check(objects) == [], name


def _root_user(o: list) -> None:
    container_of(o, "gateway")["securityContext"]["runAsNonRoot"] = False


def _writable_root(o: list) -> None:
    container_of(o, "gateway")["securityContext"]["readOnlyRootFilesystem"] = False


def _keeps_capabilities(o: list) -> None:
    container_of(o, "gateway")["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}


def _init_container_escalates(o: list) -> None:
    spec = find(o, "Deployment", "relay-state")["spec"]["template"]["spec"]
    init = copy.deepcopy(spec["containers"][0]) | {"name": "migrate"}
    init["securityContext"]["allowPrivilegeEscalation"] = True
    spec["initContainers"] = [init]


def _test_pod_without_seccomp(o: list) -> None:
    pod = deployment("smoke")["spec"]["template"]
    pod["spec"]["containers"][0]["securityContext"].pop("seccompProfile")
    o.append(
        {"kind": "Pod", "metadata": {"name": "relay-test", **pod["metadata"]}, "spec": pod["spec"]}
    )


def _no_tmp(o: list) -> None:
    container_of(o, "events")["volumeMounts"] = []


def _no_memory_limit(o: list) -> None:
    container_of(o, "events")["resources"].pop("limits")


def _no_readiness(o: list) -> None:
    container_of(o, "state").pop("readinessProbe")


def _liveness_on_readyz(o: list) -> None:
    container_of(o, "state")["livenessProbe"] = {
        "httpGet": {"path": "/readyz", "port": "management"}
    }


def _probe_on_public_port(o: list) -> None:
    container_of(o, "gateway")["readinessProbe"]["httpGet"]["port"] = "http"


def _metrics_routed(o: list) -> None:
    paths = find(o, "Ingress", "relay")["spec"]["rules"][0]["http"]["paths"]
    paths.append(
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "relay-gateway"}}}
    )


def _management_port_routed(o: list) -> None:
    paths = find(o, "Ingress", "relay")["spec"]["rules"][0]["http"]["paths"]
    paths[-1]["backend"]["service"]["port"] = {"name": "management"}


def _service_links(o: list) -> None:
    find(o, "Deployment", "relay-state")["spec"]["template"]["spec"].pop("enableServiceLinks")


def _latest_image(o: list) -> None:
    container_of(o, "state")["image"] = "relay-state:latest"


def _no_checksum(o: list) -> None:
    find(o, "Deployment", "relay-state")["spec"]["template"]["metadata"]["annotations"] = {}


def _secret_object(o: list) -> None:
    o.append(
        {"kind": "Secret", "metadata": {"name": "relay-secrets"}, "data": {"redis-url": "eA=="}}
    )


def _inline_env_secret(o: list) -> None:
    container_of(o, "gateway")["env"].append({"name": "RELAY_INTERNAL_TOKEN", "value": "hunter2"})


def _url_with_password(o: list) -> None:
    container_of(o, "gateway")["env"][0] = {
        "name": "RELAY_REDIS_URL",
        "value": "redis://:hunter2@r:6379/0",
    }


def _secret_in_configmap(o: list) -> None:
    find(o, "ConfigMap", "relay-gateway")["data"]["RELAY_ANTHROPIC_API_KEY"] = (
        "sk-ant-api03-abcdefghijkl"
    )


def _no_pdb(o: list) -> None:
    o.remove(find(o, "PodDisruptionBudget", "relay-events"))


def _autoscaled_with_replicas(o: list) -> None:
    find(o, "Deployment", "relay-gateway")["spec"]["replicas"] = 2


def _two_owners(o: list) -> None:
    o.append(
        simple(
            "ScaledObject",
            "relay-gateway",
            {"scaleTargetRef": {"name": "relay-gateway"}, "triggers": []},
        )
    )


def _short_grace(o: list) -> None:
    find(o, "Deployment", "relay-runner-background")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ] = 60


def _default_grace(o: list) -> None:
    find(o, "Deployment", "relay-runner-background")["spec"]["template"]["spec"].pop(
        "terminationGracePeriodSeconds"
    )


def _events_to_gateway(o: list) -> None:
    paths = find(o, "Ingress", "relay")["spec"]["rules"][0]["http"]["paths"]
    paths[0]["backend"]["service"]["name"] = "relay-gateway"


def _greedy_events_path(o: list) -> None:
    paths = find(o, "Ingress", "relay")["spec"]["rules"][0]["http"]["paths"]
    paths[0].update(path="/v1/runs", pathType="Prefix")


def _buffered_sse(o: list) -> None:
    find(o, "Ingress", "relay")["metadata"]["annotations"].pop(
        "nginx.ingress.kubernetes.io/proxy-buffering"
    )


def _state_open_to_ingress(o: list) -> None:
    rule = find(o, "NetworkPolicy", "relay-state")["spec"]["ingress"][0]
    rule["from"].append(
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    )


def _state_open_to_all(o: list) -> None:
    find(o, "NetworkPolicy", "relay-state")["spec"]["ingress"] = [{}]


def _runner_unisolated(o: list) -> None:
    o.remove(find(o, "NetworkPolicy", "relay-runner-background"))


BREAKAGES = {
    "root user": ("container_hardening", _root_user),
    "writable root filesystem": ("container_hardening", _writable_root),
    "capabilities kept": ("container_hardening", _keeps_capabilities),
    "init container escalates": ("container_hardening", _init_container_escalates),
    "test pod without seccomp": ("container_hardening", _test_pod_without_seccomp),
    "no /tmp emptyDir": ("writable_tmp", _no_tmp),
    "no memory limit": ("resources", _no_memory_limit),
    "no readiness probe": ("probes", _no_readiness),
    "liveness on /readyz": ("probes", _liveness_on_readyz),
    "probe on the public port": ("probes", _probe_on_public_port),
    "ingress routes /metrics": ("ingress_routes", _metrics_routed),
    "ingress reaches a management port": ("ingress_routes", _management_port_routed),
    "service links": ("service_links", _service_links),
    "latest image": ("images_pinned", _latest_image),
    "no config checksum": ("config_checksum", _no_checksum),
    "Secret object": ("no_inline_secrets", _secret_object),
    "inline token env": ("no_inline_secrets", _inline_env_secret),
    "URL with a password": ("no_inline_secrets", _url_with_password),
    "API key in a ConfigMap": ("no_inline_secrets", _secret_in_configmap),
    "Deployment without PDB": ("pdbs", _no_pdb),
    "autoscaled with replicas": ("autoscaled_have_no_replicas", _autoscaled_with_replicas),
    "HPA and ScaledObject": ("single_autoscaler", _two_owners),
    "grace equal to drain": ("runner_grace", _short_grace),
    "default grace below drain": ("runner_grace", _default_grace),
    "events routed to gateway": ("ingress_routes", _events_to_gateway),
    "events path too greedy": ("ingress_routes", _greedy_events_path),
    "SSE buffered": ("ingress_routes", _buffered_sse),
    "state open to the ingress": ("network_policies", _state_open_to_ingress),
    "state open to all": ("network_policies", _state_open_to_all),
    "runner not isolated": ("network_policies", _runner_unisolated),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_check_fires(breakage: str) -> None:
    check_name, breaks = BREAKAGES[breakage]
    objects = release()
    breaks(objects)
    assert policy.ALL_CHECKS[check_name](objects), f"{check_name} missed: {breakage}"


def test_every_check_has_a_breakage() -> None:
    assert {name for name, _ in BREAKAGES.values()} == set(policy.ALL_CHECKS)


def test_url_built_from_a_secret_reference_is_allowed() -> None:
    objects = release()
    container_of(objects, "gateway")["env"] = [
        {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "RELAY_REDIS_URL", "value": "redis://:$(REDIS_PASSWORD)@relay-redis:6379/0"},
    ]
    assert policy.check_no_inline_secrets(objects) == []
