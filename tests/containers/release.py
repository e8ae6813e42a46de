"""The chart's release, run as a cluster would run it, from the images `make images` built.

1. Values: production-values.yaml, then tests/containers/values.yaml, then
   each component's `image.fullName` (the images named in
   .relay/images/images.json), then whatever a test changes.
2. Secrets: the ones those values name. Every entry of the chart's `secrets`
   block (merged values, so a new entry is picked up) gets a key in its
   Secret: the database and Redis URLs of the embedded servers as the
   containers reach them, their passwords, and a random token for the rest.
3. Plan: every Job, Deployment and Pod the chart renders through `podkit`;
   what a kubelet would refuse, in any of them, refuses the release at once.
4. Start: `pre-install` hook Jobs in weight order, each to a clean exit; then
   every Deployment at once; then each waits for its own probes.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from relay_devstack.containers import Engine
from tests.containers.cluster import Cluster, Obj
from tests.containers.podkit import PodPlan, PodSpecError, plan_pod
from tests.containers.probes import wait_all_ready
from tests.containers.runtime import ContainerFailed, Runtime
from tests.deploy.chart import NAMESPACE, REPO, Render, load_chart, load_values, render_values

MANIFEST = REPO / ".relay" / "images" / "images.json"
BASE_VALUES = "production-values.yaml"
OVERLAY = Path(__file__).with_name("values.yaml")
HOOK = "helm.sh/hook"
RUNS_PODS = ("Deployment", "StatefulSet", "Job", "Pod")


class ReleaseRefused(ValueError):
    """Pods of the release that a kubelet would refuse; one line per problem."""


def merge(base: dict[str, Any], *overlays: dict[str, Any] | None) -> dict[str, Any]:
    """Helm's values merge: maps merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for overlay in overlays:
        for key, value in (overlay or {}).items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def built_images(engine: Engine) -> dict[str, str]:
    """service -> image reference, checked against the ids `make images` recorded."""
    if not MANIFEST.exists():
        raise RuntimeError(f"{MANIFEST} is missing: run `make images` first")
    images = json.loads(MANIFEST.read_text())["images"]
    refs = {}
    for service, image in images.items():
        ref = image["ref"] if "/" in image["ref"] else f"localhost/{image['ref']}"
        if engine.image_id(ref) != image["id"]:
            raise RuntimeError(f"{ref} is not the image `make images` built: run it again")
        refs[service] = ref
    return refs


def chart_values(images: dict[str, str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values of the release: production, the overlay, the images, `extra`."""
    chosen: dict[str, Any] = {}
    for key, block in load_chart().values.items():
        repository = block.get("image", {}).get("repository", "") if isinstance(block, dict) else ""
        service = repository.removeprefix("relay-")
        if repository.startswith("relay-") and service in images:
            chosen[key] = {"image": {"fullName": images[service]}}
    overlay = yaml.safe_load(OVERLAY.read_text())
    return merge(load_values(BASE_VALUES), overlay, chosen, extra)


@dataclass(frozen=True)
class Databases:
    """The embedded servers' URLs as the containers reach them."""

    redis_url: str
    database_url: str


def reach(url: str, host: str) -> str:
    """`url` with its host replaced (credentials, port and path kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{parts.port}" if credentials else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def secret_value(entry: str, dbs: Databases) -> str:
    by_entry = {
        "databaseUrl": dbs.database_url,
        "redisUrl": dbs.redis_url,
        "redisPassword": urlsplit(dbs.redis_url).password,
        "postgresPassword": urlsplit(dbs.database_url).password,
    }
    return by_entry.get(entry) or f"relay-test-{secrets.token_hex(20)}"


def secrets_for(values: dict[str, Any], dbs: Databases) -> list[Obj]:
    """The Secrets the values name, one key per entry of the chart's `secrets` block."""
    entries = load_chart().merge_values(values)["secrets"]
    data: dict[str, dict[str, str]] = {}
    for entry, ref in entries.items():
        if isinstance(ref, dict) and ref.get("key"):
            name = ref.get("secretName") or entries["existingSecret"]
            data.setdefault(name, {})[ref["key"]] = secret_value(entry, dbs)
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "stringData": keys,
        }
        for name, keys in sorted(data.items())
    ]


@dataclass
class ReleasePlan:
    cluster: Cluster
    hooks: list[PodPlan] = field(default_factory=list)  # pre-install Jobs, by weight
    workloads: list[PodPlan] = field(default_factory=list)
    tests: list[PodPlan] = field(default_factory=list)  # `helm test` Pods

    def pod(self, component: str) -> PodPlan:
        for plan in self.workloads:
            if plan.component == component:
                return plan
        raise KeyError(f"no workload {component!r}: {[p.component for p in self.workloads]}")


def plan_release(
    rendered: Render, secret_objects: list[Obj], *, run_id: str, network: str, files_root: Path
) -> ReleasePlan:
    cluster = Cluster(namespace=NAMESPACE, objects=[*rendered.objects, *secret_objects])
    plan = ReleasePlan(cluster=cluster)
    refused: list[str] = []
    ordered = sorted(
        (o for o in rendered.objects if o["kind"] in RUNS_PODS),
        key=lambda o: int(o["metadata"].get("annotations", {}).get("helm.sh/hook-weight", 0)),
    )
    for obj in ordered:
        hooks = obj["metadata"].get("annotations", {}).get(HOOK, "").split(",")
        try:
            pod = plan_pod(obj, cluster, run_id=run_id, network=network, files_root=files_root)
        except PodSpecError as exc:
            refused.append(str(exc))
            continue
        if "test" in hooks:
            plan.tests.append(pod)
        elif "pre-install" in hooks:
            plan.hooks.append(pod)
        elif hooks == [""]:
            plan.workloads.append(pod)
    if refused:
        raise ReleaseRefused("\n".join(refused))
    return plan


def render_release(values: dict[str, Any]) -> Render:
    return render_values(values, label="make test-containers")


def start_release(runtime: Runtime, plan: ReleasePlan, *, timeout_s: float) -> dict[str, float]:
    """Hooks to completion, then every workload; seconds to each milestone."""
    started = time.monotonic()
    figures: dict[str, float] = {}
    for hook in plan.hooks:
        code, log = runtime.run_to_completion(hook, timeout_s=timeout_s)
        if code != 0:
            raise ContainerFailed(
                f"{hook.component} ({hook.owner}) exited with code {code}:\n{log}"
            )
        figures[f"{hook.component} done"] = time.monotonic() - started
    for workload in plan.workloads:
        runtime.start_pod(workload)
    probing = time.monotonic() - started
    for component, seconds in wait_all_ready(runtime, plan.workloads, timeout_s=timeout_s).items():
        figures[f"{component} ready"] = probing + seconds
    figures["all ready"] = time.monotonic() - started
    return figures


@dataclass
class RunningRelease:
    """A started release: its plan, the values and Secrets it was made from, timings."""

    runtime: Runtime
    plan: ReleasePlan
    values: dict[str, Any]
    secrets: list[Obj] = field(repr=False)
    figures: dict[str, float]
    started: float  # time.monotonic() when its first container started

    def url(self, component: str, port: str = "http") -> str:
        """The component's port as this host reaches it (the container's address)."""
        container = self.plan.pod(component).container()
        return f"http://{self.runtime.ip(container)}:{container.ports[port]}"

    def secret(self, entry: str) -> str:
        """The value the release reads for `secrets.<entry>`."""
        entries = load_chart().merge_values(self.values)["secrets"]
        ref = entries[entry]
        data = self.plan.cluster.data("Secret", ref.get("secretName") or entries["existingSecret"])
        return (data or {})[ref["key"]]
