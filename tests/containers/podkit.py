"""A rendered Deployment, Job or Pod, turned into `podman run` command lines.

    plan = plan_pod(deployment, cluster, run_id="rct-1a2b", network="rct-1a2b")
    plan.containers[0].argv   # ["run", "--detach", "--name", ..., image, *args]

Everything comes from the object itself (and what it references in the
`Cluster`): image, command and args, the environment with every `valueFrom`
resolved, the user, group and fsGroup, `runAsNonRoot`, a read-only root
filesystem with the pod's `emptyDir` volumes as its only writable paths,
capabilities, no-new-privileges, seccomp, memory and CPU limits, ConfigMap and
Secret volumes, the probes and the `preStop` hook with their ports resolved,
the grace period, and the names the pod answers to (the Services that select
it). Nothing about Relay is known here: a chart change moves the containers.

What a kubelet would refuse (a Secret key that does not exist, a volume
nobody declared, a non-root pod running as root) raises `PodSpecError`, one
line per problem, naming the workload and container. A URL in the
environment that names a Service the chart does not render, or a port it
does not serve, is refused the same way.

Decisions:
- Why not `podman kube play`: it runs a pod spec but ignores Services and Helm
  hooks, and resolves Secrets from its own store; translating here keeps every
  rule visible, unit-tested (tests/deploy/test_podkit.py) and in the order the
  kubelet applies it.
- Variables reach podman through its own environment (`--env NAME`), never
  on the command line, where `ps` and error messages would show Secrets.
- `--read-only-tmpfs=false`: podman would otherwise mount /tmp, /var/tmp and
  /run writable in a read-only container; a pod gets only its emptyDirs.
- emptyDir is a podman volume (kept across a container restart, as the
  kubelet keeps it), chowned to the container's user (`:U`, the effect of
  fsGroup here); `sizeLimit` is not enforced (the kubelet enforces it by
  eviction, not at write time).
- Services get no virtual IP: each is a network alias of the containers it
  selects, so its port must be the container port it targets.
- No init process (`--init` off) and no restart policy: PID 1 is the
  service, as in a pod, and restarts are the test's to make (`podman start`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay_devstack.containers import engine_reads
from tests.containers.cluster import Cluster, Obj, PodMeta, expand, parse_quantity

RUN_LABEL = "io.relay.test.run"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
PROBE_DEFAULTS = {
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "successThreshold": 1,
    "failureThreshold": 3,
}


class PodSpecError(ValueError):
    """What the kubelet (or the API server) would refuse about a workload's pods."""

    def __init__(self, owner: str, problems: list[str]) -> None:
        self.owner = owner
        self.problems = problems
        super().__init__(f"{owner}: " + f"\n{owner}: ".join(problems))


@dataclass(frozen=True)
class Probe:
    """A probe (or a preStop handler) with its port resolved to a number."""

    kind: str  # "http", "tcp" or "exec"
    period_s: float
    timeout_s: float
    failure_threshold: int
    success_threshold: int = 1
    initial_delay_s: float = 0
    port: int = 0
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()

    def describe(self) -> str:
        where = {"http": f"GET {self.path} on port {self.port}", "tcp": f"TCP port {self.port}"}
        return where.get(self.kind, f"exec {' '.join(self.command)}")


@dataclass
class ContainerPlan:
    name: str  # in the pod spec
    engine_name: str  # the podman container
    image: str
    argv: list[str]  # `podman run ...` arguments, without the program
    env: dict[str, str] = field(repr=False)  # handed over in podman's environment (`--env NAME`)
    ports: dict[str, int]
    probes: dict[str, Probe]  # "startup", "readiness", "liveness"
    pre_stop: Probe | None
    writable: tuple[str, ...]  # mount paths the container may write
    read_only_root: bool
    run_as_user: int | None


@dataclass
class PodPlan:
    kind: str
    owner: str  # "Deployment/relay-gateway"
    component: str
    pod_name: str
    grace_s: int
    aliases: list[str]
    volumes: dict[str, dict[str, Any]]  # podman volume name -> options (emptyDir)
    files: dict[Path, tuple[str, int]] = field(default_factory=dict)  # ConfigMap/Secret volumes
    init_containers: list[ContainerPlan] = field(default_factory=list)
    containers: list[ContainerPlan] = field(default_factory=list)

    def container(self, name: str | None = None) -> ContainerPlan:
        return next(c for c in self.containers if name in (None, c.name))


def pod_template(obj: Obj) -> tuple[Obj, Obj]:
    """(pod metadata, pod spec) of a workload or a bare Pod."""
    if obj["kind"] == "Pod":
        return obj.get("metadata", {}), obj["spec"]
    template = obj["spec"]["template"]
    return template.get("metadata", {}), template["spec"]


def pod_name(obj: Obj) -> str:
    """A name of the shape Kubernetes gives the pod."""
    name = obj["metadata"]["name"]
    suffix = secrets.token_hex(3)[:5]
    if obj["kind"] == "Deployment":
        digest = hashlib.sha256(json.dumps(obj["spec"]["template"], sort_keys=True).encode())
        return f"{name}-{digest.hexdigest()[:10]}-{suffix}"
    if obj["kind"] == "StatefulSet":
        return f"{name}-0"
    return name if obj["kind"] == "Pod" else f"{name}-{suffix}"


def plan_pod(obj: Obj, cluster: Cluster, *, run_id: str, network: str, files_root: Path) -> PodPlan:
    """The podman plan of one pod of `obj`; PodSpecError when a kubelet would refuse it."""
    meta, spec = pod_template(obj)
    owner = f"{obj['kind']}/{obj['metadata']['name']}"
    labels = {**(meta.get("labels") or {})}
    name = pod_name(obj)
    pod = PodMeta(
        name=name,
        namespace=cluster.namespace,
        labels=labels,
        annotations=meta.get("annotations") or {},
        service_account=spec.get("serviceAccountName", "default"),
        uid=secrets.token_hex(16),
    )
    problems: list[str] = []
    if spec.get("enableServiceLinks", True) is not False:
        problems.append(
            "enableServiceLinks is not false: Services have no cluster IP here to "
            "inject as *_SERVICE_HOST variables"
        )
    plan = PodPlan(
        kind=obj["kind"],
        owner=owner,
        component=labels.get("app.kubernetes.io/component", obj["metadata"]["name"]),
        pod_name=name,
        grace_s=int(spec.get("terminationGracePeriodSeconds", 30)),
        aliases=_aliases(labels, spec, cluster, problems),
        volumes={},
    )
    mounts = _volumes(plan, spec, cluster, run_id, files_root / name, problems)
    for init, key in ((True, "initContainers"), (False, "containers")):
        for container in spec.get(key) or []:
            built = _container(
                container,
                spec,
                pod,
                cluster,
                plan,
                mounts,
                problems,
                run_id=run_id,
                network=network,
                init=init,
            )
            (plan.init_containers if init else plan.containers).append(built)
    if problems:
        raise PodSpecError(owner, problems)
    return plan


def _aliases(labels: dict[str, str], spec: Obj, cluster: Cluster, problems: list[str]) -> list[str]:
    """Every name of every Service selecting the pod; each port must be a container port."""
    ports = {
        p.get("name") or str(p["containerPort"]): int(p["containerPort"])
        for c in spec.get("containers") or []
        for p in c.get("ports") or []
    }
    aliases = []
    for svc in cluster.services_selecting(labels):
        svc_name = svc["metadata"]["name"]
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            number = ports.get(target) if isinstance(target, str) else int(target)
            if number is None:  # a name must be a container port's (a number need not be)
                problems.append(
                    f"Service {svc_name} targets port {target!r}, which no "
                    f"container of the pod declares ({sorted(ports)})"
                )
            elif number != port["port"]:
                problems.append(
                    f"Service {svc_name} maps port {port['port']} to {number}: "
                    "the harness gives Services no virtual IP to remap ports"
                )
        aliases += cluster.service_names(svc_name)
    return aliases


def _volumes(
    plan: PodPlan, spec: Obj, cluster: Cluster, run_id: str, folder: Path, problems: list[str]
) -> dict[str, tuple[str, str]]:
    """volume name -> ("volume", podman volume) or ("bind", host folder); files to write."""
    mounts: dict[str, tuple[str, str]] = {}
    for volume in spec.get("volumes") or []:
        vname = volume["name"]
        if "emptyDir" in volume:
            engine_name = f"{run_id}-{plan.pod_name}-{vname}"
            medium = (volume["emptyDir"] or {}).get("medium", "")
            plan.volumes[engine_name] = {"memory": medium == "Memory"}
            mounts[vname] = ("volume", engine_name)
            continue
        kind = next((k for k in ("configMap", "secret") if k in volume), None)
        if kind is None:
            problems.append(f"volume {vname}: only emptyDir, configMap and secret are run here")
            continue
        ref = volume[kind]
        obj_name = ref.get("name") or ref.get("secretName")
        data = cluster.data("ConfigMap" if kind == "configMap" else "Secret", obj_name)
        if data is None:
            if not ref.get("optional"):
                problems.append(f"volume {vname}: {kind} {obj_name!r} not found")
            data = {}
        mode = int(ref.get("defaultMode", 0o644))
        items = ref.get("items") or [{"key": k, "path": k} for k in sorted(data)]
        for item in items:
            if item["key"] not in data:
                problems.append(f"volume {vname}: {kind} {obj_name!r} has no key {item['key']!r}")
                continue
            plan.files[folder / vname / item["path"]] = (data[item["key"]], item.get("mode", mode))
        mounts[vname] = ("bind", str(folder / vname))
    return mounts


def _probe(raw: Obj | None, ports: dict[str, int], problems: list[str], what: str) -> Probe | None:
    if not raw:
        return None
    timing = {**PROBE_DEFAULTS, **raw}
    common: dict[str, Any] = dict(
        period_s=float(timing["periodSeconds"]),
        timeout_s=float(timing["timeoutSeconds"]),
        failure_threshold=int(timing["failureThreshold"]),
        success_threshold=int(timing["successThreshold"]),
        initial_delay_s=float(timing["initialDelaySeconds"]),
    )
    for kind, key in (("http", "httpGet"), ("tcp", "tcpSocket")):
        if key in raw:
            port = raw[key]["port"]
            number = ports.get(port) if isinstance(port, str) else int(port)
            if number is None:
                problems.append(f"{what}: port {port!r} is not a port of the container")
                return None
            headers = tuple((h["name"], h["value"]) for h in raw[key].get("httpHeaders") or [])
            return Probe(
                kind=kind,
                port=number,
                path=raw[key].get("path", "/"),
                scheme=raw[key].get("scheme", "HTTP"),
                headers=headers,
                **common,
            )
    if "exec" in raw:
        return Probe(kind="exec", command=tuple(raw["exec"]["command"]), **common)
    if "sleep" in raw:  # a preStop sleep action
        return Probe(kind="exec", command=("sleep", str(raw["sleep"]["seconds"])), **common)
    problems.append(f"{what}: unsupported handler {sorted(raw)}")
    return None


def _security(container: Obj, spec: Obj, problems: list[str], name: str) -> tuple[list[str], dict]:
    """podman arguments for the merged pod and container security contexts."""
    pod_sc, sc = spec.get("securityContext") or {}, container.get("securityContext") or {}
    merged = {
        **{
            k: pod_sc[k]
            for k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")
            if k in pod_sc
        },
        **sc,
    }
    args: list[str] = []
    uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
    if uid is not None:
        args += ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
    if merged.get("runAsNonRoot") and uid == 0:
        problems.append(f"container {name}: runAsNonRoot with runAsUser 0")
    for group in [pod_sc.get("fsGroup"), *(pod_sc.get("supplementalGroups") or [])]:
        if group is not None:
            args += ["--group-add", str(group)]
    if merged.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]
    caps = merged.get("capabilities") or {}
    args += [a for cap in caps.get("drop") or [] for a in ("--cap-drop", cap)]
    args += [a for cap in caps.get("add") or [] for a in ("--cap-add", cap)]
    if merged.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    if merged.get("privileged"):
        args.append("--privileged")
    seccomp = (merged.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        problems.append(f"container {name}: seccomp profile {seccomp} is not run here")
    return args, merged


def _mounts(
    container: Obj, mounts: dict[str, tuple[str, str]], problems: list[str]
) -> tuple[list[str], list[str]]:
    """`--volume` arguments of the container's mounts, and the paths it may write."""
    args: list[str] = []
    writable: list[str] = []
    cname = container["name"]
    for mount in container.get("volumeMounts") or []:
        source = mounts.get(mount["name"])
        if source is None:
            problems.append(f"container {cname}: mounts volume {mount['name']!r}, not declared")
            continue
        kind, where = source
        if mount.get("subPath"):
            if kind != "bind":
                problems.append(f"container {cname}: subPath of an emptyDir is not run here")
                continue
            where = f"{where}/{mount['subPath']}"
        read_only = mount.get("readOnly", False) or kind == "bind"  # ConfigMaps and Secrets: ro
        args += ["--volume", f"{where}:{mount['mountPath']}:{'ro' if read_only else 'rw,U'}"]
        if not read_only:
            writable.append(mount["mountPath"])
    return args, writable


def _limits(container: Obj) -> list[str]:
    limits = (container.get("resources") or {}).get("limits") or {}
    args = []
    if "memory" in limits:
        args += ["--memory", str(int(parse_quantity(limits["memory"])))]
    if "cpu" in limits:
        args += ["--cpus", f"{parse_quantity(limits['cpu']):g}"]
    return args


def _process(container: Obj, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Environment, working directory, entry point, image and args; the variables
    handed over through podman's environment."""
    passed = {k: v for k, v in env.items() if not engine_reads(k)}
    args = [a for k in passed for a in ("--env", k)]
    args += [a for k, v in env.items() if k not in passed for a in ("--env", f"{k}={v}")]
    if container.get("workingDir"):
        args += ["--workdir", container["workingDir"]]
    if container.get("command"):
        args += ["--entrypoint", json.dumps([expand(a, env) for a in container["command"]])]
    args += [container["image"], *[expand(str(a), env) for a in container.get("args") or []]]
    return args, passed


def _container(
    container: Obj,
    spec: Obj,
    pod: PodMeta,
    cluster: Cluster,
    plan: PodPlan,
    mounts: dict[str, tuple[str, str]],
    problems: list[str],
    *,
    run_id: str,
    network: str,
    init: bool,
) -> ContainerPlan:
    cname = container["name"]
    engine_name = f"{run_id}-{plan.pod_name}-{cname}"
    env, env_problems = cluster.env_of(container, pod)
    problems += [f"container {cname}: {p}" for p in env_problems]
    problems += [f"container {cname}: {p}" for p in cluster.reference_problems(env)]
    ports = {
        p.get("name") or str(p["containerPort"]): int(p["containerPort"])
        for p in container.get("ports") or []
    }
    security, merged = _security(container, spec, problems, cname)
    volumes, writable = _mounts(container, mounts, problems)
    process, passed = _process(container, env)
    aliases = [] if init else [a for alias in plan.aliases for a in ("--network-alias", alias)]
    argv = [
        *("run", "--detach", "--name", engine_name, "--hostname", pod.name[:63]),
        *("--network", network, *aliases, "--pull", "never", "--init=false"),
        *("--label", f"{RUN_LABEL}={run_id}", "--label", f"io.relay.test.pod={pod.name}"),
        *("--stop-timeout", str(plan.grace_s), *security, *_limits(container), *volumes),
        *process,
    ]
    what = f"container {cname}"
    probes = {
        kind: probe
        for kind in ("startup", "readiness", "liveness")
        if (probe := _probe(container.get(f"{kind}Probe"), ports, problems, f"{what} {kind}Probe"))
    }
    pre_stop = _probe(
        ((container.get("lifecycle") or {}).get("preStop")), ports, problems, f"{what} preStop"
    )
    return ContainerPlan(
        name=cname,
        engine_name=engine_name,
        image=container["image"],
        argv=argv,
        env=passed,
        ports=ports,
        probes=probes,
        pre_stop=pre_stop,
        writable=tuple(writable),
        read_only_root=bool(merged.get("readOnlyRootFilesystem")),
        run_as_user=merged.get("runAsUser"),
    )
