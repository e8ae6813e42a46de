"""The translation of rendered pods into `podman run` lines (tests/containers/podkit.py).

No container runs here (this is part of `make test`, which needs no podman):
the chart is rendered exactly as `make test-containers` renders it, every pod
is planned, and the command lines, environments, probes and refusals are
checked. `make test-containers` then runs the same plans.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.containers.cluster import Cluster, PodMeta, expand, parse_quantity
from tests.containers.podkit import PodSpecError, plan_pod
from tests.containers.release import (
    Databases,
    ReleasePlan,
    ReleaseRefused,
    chart_values,
    plan_release,
    reach,
    render_release,
    secrets_for,
)

IMAGES = {s: f"localhost/relay-{s}:t" for s in ("gateway", "events", "state", "runner", "modelsim")}
DBS = Databases(
    redis_url="redis://10.89.7.1:6400/0",
    database_url="postgresql://postgres:pw@10.89.7.1:5500/relay",
)


def release_plan(tmp_path: Path, extra: dict[str, Any] | None = None) -> ReleasePlan:
    secret_objects = secrets_for(chart_values(IMAGES), DBS)
    return plan_release(
        render_release(chart_values(IMAGES, extra)),
        secret_objects,
        run_id="rct-test",
        network="rct-net",
        files_root=tmp_path,
    )


def pairs(argv: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(argv))


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> ReleasePlan:
    return release_plan(tmp_path_factory.mktemp("files"))


def test_the_release_has_its_hook_workloads_and_test(plan: ReleasePlan) -> None:
    assert [p.component for p in plan.hooks] == ["state-migrate"]
    assert sorted(p.component for p in plan.workloads) == [
        "events",
        "gateway",
        "modelsim",
        "runner-background",
        "runner-interactive",
        "state",
    ]
    assert [p.component for p in plan.tests] == ["smoke-test"]


def test_a_deployment_becomes_its_podman_run_line(plan: ReleasePlan) -> None:
    gateway = plan.pod("gateway")
    container = gateway.container()
    argv = container.argv
    assert argv[:2] == ["run", "--detach"] and argv[-1] == IMAGES["gateway"]
    expected = {
        ("--user", "10001:10001"),
        ("--group-add", "10001"),
        ("--cap-drop", "ALL"),
        ("--security-opt", "no-new-privileges"),
        ("--network", "rct-net"),
        ("--hostname", gateway.pod_name),
        ("--pull", "never"),
        ("--memory", str(512 * 2**20)),
        ("--network-alias", "relay-gateway"),
        ("--network-alias", "relay-gateway.relay.svc"),
        ("--stop-timeout", "30"),
    }
    assert expected <= pairs(argv), expected - pairs(argv)
    assert "--read-only" in argv and "--read-only-tmpfs=false" in argv
    mounts = {v.split(":")[1]: v for k, v in pairs(argv) if k == "--volume"}
    assert mounts["/tmp"] == f"rct-test-{gateway.pod_name}-tmp:/tmp:rw,U"  # the emptyDir
    assert mounts["/etc/relay"].endswith(f"/{gateway.pod_name}/models:/etc/relay:ro")  # ConfigMap
    assert container.writable == ("/tmp",) and list(gateway.volumes) == [
        f"rct-test-{gateway.pod_name}-tmp"
    ]
    catalog = next(path for path in gateway.files if path.name == "models.yaml")
    assert "claude-sonnet-4-5" in gateway.files[catalog][0]  # production-values' catalog
    assert gateway.pod_name.startswith("relay-gateway-")


def test_the_environment_is_resolved_and_never_on_the_command_line(plan: ReleasePlan) -> None:
    secret_values = {v for s in plan.cluster.of_kind("Secret") for v in s["stringData"].values()}
    for pod in [*plan.hooks, *plan.workloads, *plan.tests]:
        for container in [*pod.init_containers, *pod.containers]:
            assert not [a for a in container.argv if any(v in a for v in secret_values)], pod.owner
            for name in container.env:
                assert ("--env", name) in pairs(container.argv)
    gateway = plan.pod("gateway").container().env
    assert (
        gateway["RELAY_PORT"] == "8080" and gateway["RELAY_STATE_URL"] == "http://relay-state:8082"
    )
    assert gateway["RELAY_INTERNAL_TOKEN"] in secret_values
    assert gateway["RELAY_REDIS_URL"] == DBS.redis_url
    (migrate,) = plan.hooks
    assert (
        migrate.container().env["RELAY_DATABASE_URL"] == DBS.database_url
    )  # relay-postgres-app/uri
    runner = plan.pod("runner-background")
    assert runner.container().env["RELAY_CONSUMER_NAME"] == runner.pod_name  # fieldRef
    assert runner.container().env["RELAY_ANTHROPIC_BASE_URL"] == "http://relay-modelsim:8090"


def test_probes_hooks_and_grace_come_from_the_chart(plan: ReleasePlan) -> None:
    gateway = plan.pod("gateway").container()
    ready = gateway.probes["readiness"]
    assert (ready.kind, ready.port, ready.path) == ("http", 9080, "/readyz")  # management
    assert (ready.period_s, ready.timeout_s, ready.failure_threshold) == (5, 2, 2)
    assert gateway.probes["startup"].path == "/livez"
    assert gateway.pre_stop is not None and gateway.pre_stop.command == ("sleep", "5")
    assert plan.pod("runner-background").grace_s == 330  # production: drain 300 + 30
    assert plan.pod("runner-background").container().pre_stop is None


def test_the_helm_test_pod_gets_its_script_and_command(plan: ReleasePlan) -> None:
    (smoke,) = plan.tests
    container = smoke.container()
    entry = container.argv[container.argv.index("--entrypoint") + 1]
    assert json.loads(entry) == ["python", "/scripts/smoke_test.py"]
    (script,) = [path for path in smoke.files if path.name == "smoke_test.py"]
    assert "def main()" in smoke.files[script][0] and smoke.files[script][1] == 0o644
    assert (f"{script.parent}:/scripts:ro") in container.argv
    assert container.env["RELAY_TEST_GATEWAY_URL"] == "http://relay-gateway:8080"
    assert smoke.aliases == []


def test_the_migration_job_runs_only_migrate(plan: ReleasePlan) -> None:
    (migrate,) = plan.hooks
    argv = migrate.container().argv
    assert argv[-2:] == [IMAGES["state"], "migrate"] and "--network-alias" not in argv
    assert sorted(migrate.container().env) == ["RELAY_DATABASE_URL", "RELAY_LOG_LEVEL"]


def test_a_missing_secret_key_names_each_reader(tmp_path: Path) -> None:
    with pytest.raises(ReleaseRefused) as refused:
        release_plan(tmp_path, {"secrets": {"adminApiKey": {"key": "admin_key"}}})
    lines = str(refused.value).splitlines()
    state = (
        "Deployment/relay-state: container state: env RELAY_ADMIN_API_KEY: Secret "
        "'relay-secrets' has no key 'admin_key'"
    )
    assert any(line.startswith(state) for line in lines), lines
    assert any(line.startswith("Pod/relay-smoke-test: container smoke-test:") for line in lines)


def test_a_url_to_a_service_that_is_not_rendered(tmp_path: Path) -> None:
    with pytest.raises(ReleaseRefused, match="RELAY_STATE_URL names Service 'relay-stat'"):
        release_plan(tmp_path, {"gateway": {"env": {"RELAY_STATE_URL": "http://relay-stat:8082"}}})
    with pytest.raises(ReleaseRefused, match=r"names port 8083 of Service 'relay-state'"):
        release_plan(tmp_path, {"gateway": {"env": {"RELAY_STATE_URL": "http://relay-state:8083"}}})


# --- the Kubernetes rules, on small objects ------------------------------------------


def pod(spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    base = {"containers": [{"name": "c", "image": "img"}], "enableServiceLinks": False}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", **meta},
        "spec": {**base, **spec},
    }


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": name}, "stringData": data}


def test_expansion_follows_kubernetes() -> None:
    defined = {"A": "1", "B": "x"}
    assert expand("$(A)-$(B)", defined) == "1-x"
    assert expand("$(C) $$(A) $(A", defined) == "$(C) $(A) $(A"


def test_env_order_envfrom_then_env_and_references() -> None:
    cluster = Cluster(
        "ns",
        [
            secret("s", TOKEN="t", OTHER="o"),
            {"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"X": "cm"}},
        ],
    )
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "s"}, "prefix": "S_"}],
        "env": [
            {"name": "X", "value": "env wins"},
            {"name": "URL", "value": "redis://:$(S_TOKEN)@h/$(MISSING)"},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope", "optional": True}},
            },
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
        ],
        "resources": {"limits": {"memory": "512Mi"}},
    }
    env, problems = cluster.env_of(
        container, PodMeta(name="p", namespace="ns", labels={"app": "a"})
    )
    assert problems == []
    assert env == {
        "X": "env wins",
        "S_TOKEN": "t",
        "S_OTHER": "o",
        "URL": "redis://:t@h/$(MISSING)",
        "POD": "a",
        "MEM": "512",
    }


def test_what_a_kubelet_refuses(tmp_path: Path) -> None:
    cluster = Cluster("ns", [secret("s", K="v")])
    cases = {
        "Secret 's' has no key 'x'": {
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "x"}}}]
        },
        "Secret 'gone' not found": {
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "x"}}}]
        },
        "mounts volume 'v', not declared": {"volumeMounts": [{"name": "v", "mountPath": "/v"}]},
        "runAsNonRoot with runAsUser 0": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 0}
        },
        "fieldRef status.podIP is not known": {
            "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
        },
    }
    for message, extra in cases.items():
        assert isinstance(extra, dict)
        obj = pod({"containers": [{"name": "c", "image": "img", **extra}]})
        with pytest.raises(PodSpecError, match=message):
            plan_pod(obj, cluster, run_id="r", network="n", files_root=tmp_path)
    with pytest.raises(PodSpecError, match="enableServiceLinks is not false"):
        plan_pod(
            pod({"enableServiceLinks": True}), cluster, run_id="r", network="n", files_root=tmp_path
        )
    with pytest.raises(PodSpecError, match="only emptyDir, configMap and secret"):
        plan_pod(
            pod({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}),
            cluster,
            run_id="r",
            network="n",
            files_root=tmp_path,
        )


def test_services_become_aliases_only_without_port_remapping(tmp_path: Path) -> None:
    def service(port: int, target: Any) -> dict[str, Any]:
        return {
            "kind": "Service",
            "metadata": {"name": "svc"},
            "spec": {"selector": {"app": "a"}, "ports": [{"port": port, "targetPort": target}]},
        }

    container = {"name": "c", "image": "img", "ports": [{"name": "http", "containerPort": 8080}]}
    obj = pod({"containers": [container]}, labels={"app": "a"})
    ok = plan_pod(
        obj, Cluster("ns", [service(8080, "http")]), run_id="r", network="n", files_root=tmp_path
    )
    assert ok.aliases == ["svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local"]
    with pytest.raises(PodSpecError, match="maps port 80 to 8080"):
        plan_pod(
            obj, Cluster("ns", [service(80, "http")]), run_id="r", network="n", files_root=tmp_path
        )
    with pytest.raises(PodSpecError, match="targets port 'metrics'"):
        plan_pod(
            obj,
            Cluster("ns", [service(9090, "metrics")]),
            run_id="r",
            network="n",
            files_root=tmp_path,
        )


def test_variables_podman_reads_itself_stay_on_the_line(tmp_path: Path) -> None:
    container = {
        "name": "c",
        "image": "img",
        "env": [{"name": "PATH", "value": "/x"}, {"name": "MINE", "value": "y"}],
    }
    planned = plan_pod(
        pod({"containers": [container]}),
        Cluster("ns", []),
        run_id="r",
        network="n",
        files_root=tmp_path,
    ).container()
    assert ("--env", "PATH=/x") in pairs(planned.argv) and planned.env == {"MINE": "y"}


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("512Mi", 512 * 2**20), ("1Gi", 2**30), ("250m", 0.25), ("2", 2), ("1.5", 1.5), ("1k", 1000)],
)
def test_quantities(quantity: str, value: float) -> None:
    assert parse_quantity(quantity) == value


def test_urls_are_rewritten_for_the_containers() -> None:
    assert reach("postgresql://postgres:pw@127.0.0.1:5500/relay", "10.1.2.1") == (
        "postgresql://postgres:pw@10.1.2.1:5500/relay"
    )
    assert reach("redis://127.0.0.1:6400/0", "10.1.2.1") == "redis://10.1.2.1:6400/0"
