"""Policy checks over rendered Kubernetes objects.

Each check takes the objects of one render and returns a list of violations
(empty = compliant), so a test can report every offender at once and
test_policy_checker.py can prove each check fires on a bad manifest. The checks
know Kubernetes, not this chart's templates: they read only rendered objects.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

Obj = dict[str, Any]

COMPONENT = "app.kubernetes.io/component"
INSTANCE = "app.kubernetes.io/instance"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
PUBLIC_COMPONENTS = frozenset({"gateway", "events"})
DATABASE_COMPONENTS = frozenset({"redis", "postgres"})
# Components whose readiness has no dependency to check (ready when alive).
NO_DEPENDENCY_COMPONENTS = frozenset({"modelsim"})

SECRETISH_NAME = re.compile(
    r"PASSWORD|SECRET|_TOKEN$|API_KEY|_KEY$|_AUTH$|CREDENTIAL|DATABASE_URL|REDIS_URL", re.I
)
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:([^@\s/]+)@", re.I)
ENV_REFERENCE = re.compile(r"^\$\([A-Za-z_][A-Za-z0-9_]*\)$")
KNOWN_SECRET_VALUES = re.compile(
    r"sk-ant-[A-Za-z0-9_-]{8,}|sk-[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)


def ref(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def component_of(obj: Obj) -> str:
    return obj["metadata"].get("labels", {}).get(COMPONENT, "")


# --- pods and containers ----------------------------------------------------------


def pod_specs(objects: list[Obj]) -> Iterator[tuple[Obj, Obj, Obj, bool]]:
    """(owner object, pod metadata, pod spec, long_running) for everything that runs pods."""
    for obj in objects:
        kind = obj["kind"]
        if kind in WORKLOAD_KINDS:
            template = obj["spec"]["template"]
            yield obj, template.get("metadata", {}), template["spec"], True
        elif kind == "Job":
            template = obj["spec"]["template"]
            yield obj, template.get("metadata", {}), template["spec"], False
        elif kind == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
            yield obj, template.get("metadata", {}), template["spec"], False
        elif kind == "Pod":
            yield obj, obj["metadata"], obj["spec"], False


def containers(spec: Obj) -> Iterator[tuple[Obj, bool]]:
    """(container, is_init) for init and regular containers."""
    for container in spec.get("initContainers") or []:
        yield container, True
    for container in spec.get("containers") or []:
        yield container, False


def check_container_hardening(objects: list[Obj]) -> list[str]:
    """Non-root, read-only root filesystem, no capabilities, no escalation, seccomp."""
    problems = []
    for owner, _, spec, _ in pod_specs(objects):
        pod_sc = spec.get("securityContext") or {}
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(f"{ref(owner)}: {flag} is set")
        for container, _ in containers(spec):
            where = f"{ref(owner)} container {container['name']}"
            sc = container.get("securityContext") or {}
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            user = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if non_root is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if user == 0:
                problems.append(f"{where}: runAsUser is 0")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if caps.get("add"):
                problems.append(f"{where}: adds capabilities {caps['add']}")
            seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: seccompProfile is {seccomp!r}, not RuntimeDefault")
    return problems


def check_writable_tmp(objects: list[Obj]) -> list[str]:
    """A read-only root filesystem needs an emptyDir on /tmp in every container."""
    problems = []
    for owner, _, spec, _ in pod_specs(objects):
        empty_dirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
        for container, _ in containers(spec):
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
            if mounts.get("/tmp") not in empty_dirs:
                problems.append(f"{ref(owner)} container {container['name']}: no emptyDir on /tmp")
    return problems


def check_resources(objects: list[Obj]) -> list[str]:
    """Requests (cpu, memory) and a memory limit on every container."""
    problems = []
    for owner, _, spec, _ in pod_specs(objects):
        for container, _ in containers(spec):
            resources = container.get("resources") or {}
            requests = resources.get("requests") or {}
            limits = resources.get("limits") or {}
            missing = [f"requests.{r}" for r in ("cpu", "memory") if r not in requests]
            missing += ["limits.memory"] if "memory" not in limits else []
            if missing:
                problems.append(f"{ref(owner)} container {container['name']}: no {missing}")
    return problems


def check_probes(objects: list[Obj]) -> list[str]:
    """Liveness and readiness on long-running containers; liveness never checks
    dependencies (`/livez`); a Relay service is probed on its management port, so
    a flood of its public port cannot fail a probe (modelsim has one port: `/healthz`)."""
    problems = []
    for owner, meta, spec, long_running in pod_specs(objects):
        if not long_running:
            continue
        component = meta.get("labels", {}).get(COMPONENT, "")
        for container in spec.get("containers") or []:
            where = f"{ref(owner)} container {container['name']}"
            liveness = container.get("livenessProbe")
            readiness = container.get("readinessProbe")
            if not liveness:
                problems.append(f"{where}: no livenessProbe")
            if not readiness:
                problems.append(f"{where}: no readinessProbe")
            live_path = ((liveness or {}).get("httpGet") or {}).get("path")
            ready_path = ((readiness or {}).get("httpGet") or {}).get("path")
            alive = "/healthz" if component in NO_DEPENDENCY_COMPONENTS else "/livez"
            if live_path is not None and live_path != alive:
                problems.append(f"{where}: liveness probes {live_path}, not {alive}")
            if component in NO_DEPENDENCY_COMPONENTS or component in DATABASE_COMPONENTS:
                continue
            for kind, probe in (("liveness", liveness), ("readiness", readiness)):
                port = ((probe or {}).get("httpGet") or {}).get("port")
                if port is not None and port != MANAGEMENT_PORT:
                    problems.append(f"{where}: {kind} probe on port {port}, not {MANAGEMENT_PORT}")
            if (
                ready_path is not None
                and component not in NO_DEPENDENCY_COMPONENTS
                and ready_path != "/readyz"
            ):
                problems.append(f"{where}: readiness probes {ready_path}, not /readyz")
    return problems


def check_service_links(objects: list[Obj]) -> list[str]:
    """Service links inject RELAY_*_PORT=tcp://... variables that collide with settings."""
    return [
        f"{ref(owner)}: enableServiceLinks is not false"
        for owner, _, spec, _ in pod_specs(objects)
        if spec.get("enableServiceLinks") is not False
    ]


def check_images_pinned(objects: list[Obj]) -> list[str]:
    """Every image names a version tag or a digest, never `latest` or nothing."""
    problems = []
    for owner, _, spec, _ in pod_specs(objects):
        for container, _ in containers(spec):
            image = container.get("image", "")
            if "@sha256:" in image:
                continue
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not tag or tag == "latest":
                problems.append(f"{ref(owner)} container {container['name']}: image {image!r}")
    return problems


def check_config_checksum(objects: list[Obj]) -> list[str]:
    """Pods reading a rendered ConfigMap carry checksum/config, so a change rolls them."""
    rendered = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    problems = []
    for owner, meta, spec, long_running in pod_specs(objects):
        if not long_running:
            continue
        used = {v["configMap"]["name"] for v in spec.get("volumes") or [] if "configMap" in v}
        for container, _ in containers(spec):
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    used.add(source["configMapRef"]["name"])
        checksum = (meta.get("annotations") or {}).get("checksum/config", "")
        if used & rendered and not re.fullmatch(r"[0-9a-f]{64}", checksum):
            problems.append(
                f"{ref(owner)}: reads ConfigMaps {sorted(used)} without checksum/config"
            )
    return problems


# --- secrets ------------------------------------------------------------------------


def _literal_secret(value: str) -> bool:
    """True when a value holds secret material that is not a $(VAR) reference."""
    match = URL_PASSWORD.search(value)
    if match:
        return not ENV_REFERENCE.match(match.group(1))
    return "://" not in value and not ENV_REFERENCE.match(value) and value != ""


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def check_no_inline_secrets(objects: list[Obj], allowed_secrets: tuple[str, ...] = ()) -> list[str]:
    """Secrets only by reference: no Secret data, no secret-looking literal env or config."""
    problems = []
    for obj in objects:
        if obj["kind"] == "Secret" and (obj.get("data") or obj.get("stringData")):
            if obj["metadata"]["name"] not in allowed_secrets:
                problems.append(f"{ref(obj)}: the chart renders secret data")
        if obj["kind"] == "ConfigMap":
            for key, value in (obj.get("data") or {}).items():
                if SECRETISH_NAME.search(key):
                    problems.append(f"{ref(obj)}: secret-looking key {key}")
                elif URL_PASSWORD.search(str(value)) and _literal_secret(str(value)):
                    problems.append(f"{ref(obj)}: {key} holds a URL with a password")
        for text in _strings(obj):
            if KNOWN_SECRET_VALUES.search(text):
                problems.append(f"{ref(obj)}: a value looks like a credential")
                break
    for owner, _, spec, _ in pod_specs(objects):
        for container, _ in containers(spec):
            for env in container.get("env") or []:
                if "value" not in env:
                    continue
                value = str(env["value"])
                secretish = SECRETISH_NAME.search(env["name"])
                has_url_password = URL_PASSWORD.search(value) is not None
                if (secretish or has_url_password) and _literal_secret(value):
                    problems.append(
                        f"{ref(owner)} container {container['name']}: env {env['name']} "
                        "has an inline value (use valueFrom.secretKeyRef)"
                    )
    return problems


# --- availability and autoscaling -----------------------------------------------------


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def check_pdbs(objects: list[Obj]) -> list[str]:
    """Every Deployment has a PodDisruptionBudget, and none forbids every eviction."""
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    problems = []
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        labels = obj["spec"]["template"]["metadata"].get("labels", {})
        if not any(_selects(p["spec"].get("selector") or {}, labels) for p in pdbs):
            problems.append(f"{ref(obj)}: no PodDisruptionBudget selects it")
    for pdb in pdbs:
        if pdb["spec"].get("maxUnavailable") in (0, "0%"):
            problems.append(f"{ref(pdb)}: maxUnavailable 0 blocks every node drain")
    return problems


def _autoscaler_targets(objects: list[Obj]) -> list[tuple[str, str, str]]:
    """(autoscaler ref, target kind, target name) of every HPA and ScaledObject."""
    targets = []
    for obj in objects:
        if obj["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            target = obj["spec"]["scaleTargetRef"]
            targets.append((ref(obj), target.get("kind", "Deployment"), target["name"]))
    return targets


def check_autoscaled_have_no_replicas(objects: list[Obj]) -> list[str]:
    """An autoscaled Deployment leaves `replicas` to its autoscaler (no fight on upgrade)."""
    workloads = {
        (o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] in WORKLOAD_KINDS
    }
    problems = []
    for scaler, kind, name in _autoscaler_targets(objects):
        workload = workloads.get((kind, name))
        if workload is None:
            problems.append(f"{scaler}: targets {kind}/{name}, which is not rendered")
        elif "replicas" in workload["spec"]:
            problems.append(f"{kind}/{name}: sets replicas but {scaler} owns its scale")
    return problems


def check_single_autoscaler(objects: list[Obj]) -> list[str]:
    """One owner per workload: never an HPA and a ScaledObject (or two of either)."""
    counts = Counter((kind, name) for _, kind, name in _autoscaler_targets(objects))
    problems = [f"{k}/{n}: {c} autoscalers own it" for (k, n), c in counts.items() if c > 1]
    hpa_names = {o["metadata"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    for obj in objects:
        if obj["kind"] != "ScaledObject":
            continue
        advanced = obj["spec"].get("advanced") or {}
        keda_hpa = (advanced.get("horizontalPodAutoscalerConfig") or {}).get("name")
        keda_hpa = keda_hpa or f"keda-hpa-{obj['metadata']['name']}"
        if keda_hpa in hpa_names:
            problems.append(f"{ref(obj)}: KEDA's HPA {keda_hpa} collides with a rendered HPA")
    return problems


def _container_env(container: Obj, config_maps: dict[str, Obj]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            data = config_maps.get(source["configMapRef"]["name"], {}).get("data") or {}
            env.update({k: str(v) for k, v in data.items()})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def check_runner_grace(objects: list[Obj]) -> list[str]:
    """Runners outlive their drain deadline (terminationGracePeriodSeconds > drain timeout)."""
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    problems = []
    for owner, _, spec, long_running in pod_specs(objects):
        if not long_running:
            continue
        for container in spec.get("containers") or []:
            env = _container_env(container, config_maps)
            if "RELAY_RUNNER_POOL" not in env:
                continue
            drain = float(env.get("RELAY_DRAIN_TIMEOUT_S", "60"))
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace <= drain:
                problems.append(
                    f"{ref(owner)}: terminationGracePeriodSeconds {grace} <= drain timeout {drain}"
                )
    return problems


# --- ingress ------------------------------------------------------------------------

# URL -> the component it must reach; None: no backend at all (the management
# paths live on the management port, which no Ingress may reach).
INGRESS_ROUTES: dict[str, str | None] = {
    "/v1/runs/r_0123/events": "events",
    "/v1/runs/3f2a9c1e-7b7d-4c55-9a57-0f1b2c3d4e5f/events": "events",
    "/v1/runs/r_0123": "gateway",
    "/v1/runs/r_0123/cancel": "gateway",
    "/v1/runs": "gateway",
    "/v1/chat/stream": "gateway",
    "/v1/conversations/c_1/messages": "gateway",
    "/healthz": "gateway",
    "/metrics": None,
    "/livez": None,
    "/readyz": None,
    "/internal/v1/ready": None,
}
MANAGEMENT_PORT = "management"


def _path_matches(path: str, path_type: str, url: str, regex: bool) -> bool:
    if path_type == "Exact":
        return url == path
    if regex:  # ingress-nginx with use-regex: case-insensitive, anchored at the start
        return re.match(path, url, re.IGNORECASE) is not None
    prefix = path.rstrip("/")
    return prefix == "" or url == prefix or url.startswith(prefix + "/")


def route(ingress: Obj, url: str) -> str | None:
    """The backend Service an Ingress sends `url` to (longest matching path wins)."""
    annotations = ingress["metadata"].get("annotations") or {}
    regex = annotations.get("nginx.ingress.kubernetes.io/use-regex") == "true"
    best: tuple[int, str] | None = None
    for rule in ingress["spec"].get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            if _path_matches(path["path"], path["pathType"], url, regex):
                candidate = (len(path["path"]), path["backend"]["service"]["name"])
                best = max(best, candidate) if best else candidate
    return best[1] if best else None


def check_ingress_routes(objects: list[Obj]) -> list[str]:
    """/v1/runs/{id}/events → events, the public API → gateway, no management path
    anywhere and no backend on a management port, with SSE-friendly proxying."""
    services = {
        o["metadata"]["name"]: (o["spec"].get("selector") or {}).get(COMPONENT)
        for o in objects
        if o["kind"] == "Service"
    }
    problems = []
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        for url, expected in INGRESS_ROUTES.items():
            backend = route(ingress, url)
            if services.get(backend or "") != expected:
                problems.append(f"{ref(ingress)}: {url} goes to {backend}, not the {expected}")
        for rule in ingress["spec"].get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                port = (path["backend"]["service"].get("port") or {}).get("name")
                if port == MANAGEMENT_PORT:
                    problems.append(f"{ref(ingress)}: {path['path']} reaches a management port")
        if ingress["spec"].get("ingressClassName") == "nginx":
            annotations = ingress["metadata"].get("annotations") or {}
            prefix = "nginx.ingress.kubernetes.io/"
            if annotations.get(prefix + "proxy-buffering") != "off":
                problems.append(f"{ref(ingress)}: proxy buffering is not off (SSE)")
            if int(annotations.get(prefix + "proxy-read-timeout", "60")) < 300:
                problems.append(f"{ref(ingress)}: proxy-read-timeout below 300 s (SSE)")
    return problems


# --- network policies -------------------------------------------------------------------


def check_network_policies(objects: list[Obj], metrics_peers: list[Obj] | None = None) -> list[str]:
    """Every pod is isolated; only gateway and events admit the ingress controller.

    Allowed peers: pods of the same release (podSelector with its instance label,
    same namespace); for gateway and events a namespace-scoped peer (the ingress
    controller); for Redis, KEDA's namespace; for relay services (not the
    databases) the configured metrics scrapers.
    """
    metrics_peers = metrics_peers or []
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    problems = []
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        labels = obj["spec"]["template"]["metadata"].get("labels", {})
        component = labels.get(COMPONENT, "")
        selecting = [p for p in policies if _selects(p["spec"].get("podSelector") or {}, labels)]
        if not selecting:
            problems.append(f"{ref(obj)}: no NetworkPolicy isolates it")
        for policy in selecting:
            if "Ingress" not in (policy["spec"].get("policyTypes") or ["Ingress"]):
                problems.append(f"{ref(policy)}: does not restrict ingress")
            for rule in policy["spec"].get("ingress") or []:
                peers = rule.get("from") or []
                if not peers:
                    problems.append(f"{ref(policy)}: a rule admits every source")
                for peer in peers:
                    problem = _peer_problem(peer, component, labels, metrics_peers)
                    if problem:
                        problems.append(f"{ref(policy)} ({component}): {problem}")
    return problems


def _peer_problem(peer: Obj, component: str, labels: dict, metrics_peers: list[Obj]) -> str:
    if "ipBlock" in peer:
        return f"admits an ipBlock {peer['ipBlock']}"
    if peer in metrics_peers:
        return (
            "metrics scrapers may not reach a database" if component in DATABASE_COMPONENTS else ""
        )
    namespaces = peer.get("namespaceSelector")
    if namespaces is None:
        match = (peer.get("podSelector") or {}).get("matchLabels") or {}
        if match.get(INSTANCE) != labels.get(INSTANCE):
            return f"admits pods outside the release: {peer}"
        return ""
    if not (namespaces.get("matchLabels") or namespaces.get("matchExpressions")):
        return "admits every namespace"
    if component in PUBLIC_COMPONENTS:
        return ""
    namespace = (namespaces.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
    if component == "redis" and namespace == "keda":
        return ""
    return f"admits namespace {namespaces} to an internal component"


ALL_CHECKS = {
    "container_hardening": check_container_hardening,
    "writable_tmp": check_writable_tmp,
    "resources": check_resources,
    "probes": check_probes,
    "service_links": check_service_links,
    "images_pinned": check_images_pinned,
    "config_checksum": check_config_checksum,
    "no_inline_secrets": check_no_inline_secrets,
    "pdbs": check_pdbs,
    "autoscaled_have_no_replicas": check_autoscaled_have_no_replicas,
    "single_autoscaler": check_single_autoscaler,
    "runner_grace": check_runner_grace,
    "ingress_routes": check_ingress_routes,
    "network_policies": check_network_policies,
}
