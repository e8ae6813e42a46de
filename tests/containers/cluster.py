"""What a pod reads from the cluster, resolved the way the kubelet does it.

The rendered chart plus the objects a test provides (its Secrets) stand in for
the API server: `Cluster` answers the lookups a kubelet makes when it creates
a container (Secret and ConfigMap keys, the pod's own fields) and the names a
container may resolve (Services, by their selectors). Every problem is
reported as text naming what is missing and where, never a value: Secrets
are read here.

Kubernetes rules kept (pkg/kubelet/kubelet_pods.go, third_party/forked/golang/expansion):
- `envFrom` sources first, in order, then `env` in order; a later name wins.
- `$(NAME)` in a `value` (and in command/args) expands to a variable defined
  before it; an unknown one stays as written; `$$` is a literal `$`.
- A missing Secret/ConfigMap or key fails the container unless `optional`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Obj = dict[str, Any]

CLUSTER_DOMAIN = "cluster.local"
URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://([^\s/'\"]+)", re.I)
DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "redis": 6379,
    "rediss": 6379,
    "postgresql": 5432,
    "postgres": 5432,
    "grpc": 80,
}


@dataclass(frozen=True)
class PodMeta:
    """The fields of a pod a container may read through `fieldRef`."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    node_name: str = "podman"
    uid: str = ""


def expand(text: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names replaced, `$$` escapes."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(defined[name] if name in defined else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity ("512Mi", "250m", "1.5", 2) as a number.

    Written here rather than taken from the `kubernetes` client
    (kubernetes.utils.parse_quantity): that package is not a dependency, and a
    whole API client for a dozen lines of suffixes is not worth it."""
    text = str(value).strip()
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
    decimal = {
        "n": 1e-9,
        "u": 1e-6,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "P": 1e15,
        "E": 1e18,
    }
    for suffix, factor in binary.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    if text and text[-1] in decimal and not re.fullmatch(r"[\d.]+[eE][+-]?\d+", text):
        return float(text[:-1]) * decimal[text[-1]]
    return float(text)


@dataclass
class Cluster:
    """The objects of one release (and a test's own), as the API server would serve them."""

    namespace: str
    objects: list[Obj] = field(repr=False)  # Secrets among them: never printed

    def find(self, kind: str, name: str) -> Obj | None:
        for obj in self.objects:
            if obj.get("kind") == kind and obj.get("metadata", {}).get("name") == name:
                return obj
        return None

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o.get("kind") == kind]

    def data(self, kind: str, name: str) -> dict[str, str] | None:
        """A Secret's or ConfigMap's keys and values (None when there is no such object)."""
        obj = self.find(kind, name)
        if obj is None:
            return None
        if kind == "Secret":
            out = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            out.update(obj.get("stringData") or {})
            return out
        binary = {k: base64.b64decode(v).decode() for k, v in (obj.get("binaryData") or {}).items()}
        return {**binary, **(obj.get("data") or {})}

    # --- Services: names that resolve, and who they resolve to -------------------

    def services_selecting(self, labels: Mapping[str, str]) -> list[Obj]:
        return [
            svc
            for svc in self.of_kind("Service")
            if (sel := svc["spec"].get("selector"))
            and all(labels.get(k) == v for k, v in sel.items())
        ]

    def service_names(self, name: str) -> list[str]:
        """Every name a pod of this namespace resolves a Service by."""
        ns = self.namespace
        return [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"]

    def cluster_service(self, host: str) -> str | None:
        """The Service a host name means inside the cluster, or None for a host outside."""
        host = host.lower().rstrip(".")
        if re.fullmatch(r"[\d.]+|\[.*\]|localhost", host):
            return None
        for suffix in (
            f".{self.namespace}.svc.{CLUSTER_DOMAIN}",
            f".{self.namespace}.svc",
            f".{self.namespace}",
            "",
        ):
            if host.endswith(suffix) and "." not in host.removesuffix(suffix):
                return host.removesuffix(suffix)
        if host.endswith(f".svc.{CLUSTER_DOMAIN}") or host.endswith(".svc"):
            return host.split(".")[0]  # another namespace: reported as missing here
        return None

    def reference_problems(self, env: Mapping[str, str]) -> list[str]:
        """URLs in `env` that name a Service (or a port of one) the release does not render."""
        problems = []
        for var, value in env.items():
            for scheme, netloc in URL.findall(value):
                host_port = netloc.rsplit("@", 1)[-1]
                parts = urlsplit(f"//{host_port}")
                service = self.cluster_service(parts.hostname or "")
                if service is None:
                    continue
                svc = self.find("Service", service)
                port = parts.port or DEFAULT_PORTS.get(scheme.lower())
                if svc is None:
                    names = ", ".join(
                        sorted(s["metadata"]["name"] for s in self.of_kind("Service"))
                    )
                    problems.append(
                        f"{var} names Service {service!r}, which the chart does not "
                        f"render (it renders: {names or 'none'})"
                    )
                elif port not in {p["port"] for p in svc["spec"].get("ports", [])}:
                    ports = sorted(p["port"] for p in svc["spec"].get("ports", []))
                    problems.append(
                        f"{var} names port {port} of Service {service!r}, which serves {ports}"
                    )
        return problems

    # --- environment ---------------------------------------------------------------

    def env_of(self, container: Obj, pod: PodMeta) -> tuple[dict[str, str], list[str]]:
        """The container's environment as the kubelet builds it, and what is wrong."""
        env: dict[str, str] = {}
        problems: list[str] = []
        for source in container.get("envFrom") or []:
            env.update(self._env_from(source, problems))
        for entry in container.get("env") or []:
            name = entry["name"]
            if "valueFrom" in entry:
                value = self._value_from(name, entry["valueFrom"], container, pod, problems)
                if value is not None:
                    env[name] = value
            else:
                env[name] = expand(str(entry.get("value", "")), env)
        return env, problems

    def _env_from(self, source: Obj, problems: list[str]) -> Iterator[tuple[str, str]]:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in source:
                ref = source[key]
                data = self.data(kind, ref["name"])
                if data is None:
                    if not ref.get("optional"):
                        problems.append(f"envFrom: {kind} {ref['name']!r} not found")
                    return
                prefix = source.get("prefix", "")
                yield from ((prefix + k, v) for k, v in data.items())

    def _value_from(
        self, var: str, source: Obj, container: Obj, pod: PodMeta, problems: list[str]
    ) -> str | None:
        for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            if key in source:
                ref = source[key]
                data = self.data(kind, ref["name"])
                optional = bool(ref.get("optional"))
                if data is None:
                    if not optional:
                        problems.append(f"env {var}: {kind} {ref['name']!r} not found")
                    return None
                if ref["key"] not in data:
                    if not optional:
                        problems.append(
                            f"env {var}: {kind} {ref['name']!r} has no key {ref['key']!r} "
                            f"(its keys: {', '.join(sorted(data)) or 'none'})"
                        )
                    return None
                return data[ref["key"]]
        if "fieldRef" in source:
            return self._field(var, source["fieldRef"]["fieldPath"], pod, problems)
        if "resourceFieldRef" in source:
            return self._resource(var, source["resourceFieldRef"], container, problems)
        problems.append(f"env {var}: unsupported valueFrom {sorted(source)}")
        return None

    def _field(self, var: str, path: str, pod: PodMeta, problems: list[str]) -> str | None:
        simple = {
            "metadata.name": pod.name,
            "metadata.namespace": pod.namespace,
            "metadata.uid": pod.uid,
            "spec.nodeName": pod.node_name,
            "spec.serviceAccountName": pod.service_account,
        }
        if path in simple:
            return simple[path]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if match:
            source = pod.labels if match.group(1) == "labels" else pod.annotations
            return source.get(match.group(2), "")
        problems.append(f"env {var}: fieldRef {path} is not known before the pod runs here")
        return None

    def _resource(self, var: str, ref: Obj, container: Obj, problems: list[str]) -> str | None:
        kind, _, resource = ref["resource"].partition(".")
        raw = (container.get("resources") or {}).get(kind, {}).get(resource)
        if raw is None:
            problems.append(f"env {var}: {ref['resource']} is not set (node capacity unknown)")
            return None
        value = parse_quantity(raw) / parse_quantity(ref.get("divisor", "1"))
        return str(int(-(-value // 1)))  # the kubelet rounds up
