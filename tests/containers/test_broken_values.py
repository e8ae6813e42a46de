"""A deliberately broken value fails with a message naming the component and the cause.

The mistakes a first `helm install` would meet as CreateContainerConfigError
or CrashLoopBackOff: a Secret key the operator never created, a URL naming a
Service the chart does not render, and a service writing where the read-only
root filesystem does not let it (the prometheus client's multiprocess folder
pointed outside the pod's emptyDir). The first two are refused before any
container starts, as the kubelet refuses them; the third starts the pod and
reads why it died.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.containers.cluster import Obj
from tests.containers.conftest import record
from tests.containers.podkit import PodPlan
from tests.containers.probes import wait_ready
from tests.containers.release import (
    Databases,
    ReleasePlan,
    ReleaseRefused,
    chart_values,
    plan_release,
    render_release,
    secrets_for,
)
from tests.containers.runtime import ContainerFailed, Runtime

pytestmark = pytest.mark.timeout(600)
# prometheus_client writes one file per metric there as soon as metrics exist.
MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"


def plan_with(
    runtime: Runtime, images: dict[str, str], databases: Databases, extra: dict[str, Any]
) -> ReleasePlan:
    """The release with `extra` values, against the Secrets of the unbroken values
    (the operator created those, following the documented keys)."""
    operator_secrets: list[Obj] = secrets_for(chart_values(images), databases)
    values = chart_values(images, extra)
    return plan_release(
        render_release(values),
        operator_secrets,
        run_id=runtime.run_id,
        network=runtime.run_id,
        files_root=runtime.root / "broken",
    )


def test_a_secret_key_that_does_not_exist(
    runtime: Runtime, images: dict[str, str], databases: Databases
) -> None:
    extra = {"secrets": {"internalToken": {"key": "internal_token"}}}
    with pytest.raises(ReleaseRefused) as refused:
        plan_with(runtime, images, databases, extra)
    message = str(refused.value)
    record("broken: secret key", message.splitlines()[0])
    assert (
        "Deployment/relay-gateway: container gateway: env RELAY_INTERNAL_TOKEN: Secret "
        "'relay-secrets' has no key 'internal_token'" in message
    ), message
    assert "Deployment/relay-runner-background:" in message  # every reader is named


def test_a_url_naming_a_service_the_chart_does_not_render(
    runtime: Runtime, images: dict[str, str], databases: Databases
) -> None:
    extra = {"gateway": {"env": {"RELAY_STATE_URL": "http://relay-stat:8082"}}}
    with pytest.raises(ReleaseRefused) as refused:
        plan_with(runtime, images, databases, extra)
    record("broken: Service name", str(refused.value).splitlines()[0])
    assert (
        "Deployment/relay-gateway: container gateway: RELAY_STATE_URL names Service "
        "'relay-stat', which the chart does not render" in str(refused.value)
    ), refused.value


def _gateway_with(
    runtime: Runtime, images: dict[str, str], databases: Databases, folder: str
) -> PodPlan:
    extra = {"gateway": {"extraEnv": [{"name": MULTIPROC, "value": folder}]}}
    return plan_with(runtime, images, databases, extra).pod("gateway")


def test_a_service_writing_to_a_read_only_path(
    runtime: Runtime, images: dict[str, str], databases: Databases
) -> None:
    broken = _gateway_with(runtime, images, databases, "/app")
    runtime.start_pod(broken)
    try:
        with pytest.raises(ContainerFailed) as failed:
            wait_ready(runtime, broken, timeout_s=60)
    finally:
        runtime.remove_pod(broken)
    message = str(failed.value)
    record(
        "broken: read-only path", " / ".join([message.splitlines()[0], message.splitlines()[-1]])
    )
    assert message.startswith("gateway (Deployment/relay-gateway): gateway: exited"), message
    assert "Read-only file system" in message and "/app/" in message
    assert "RELAY_MODELS_FILE" not in message  # the cause, not a setting it happened under


def test_the_same_service_writing_to_its_empty_dir_starts(
    runtime: Runtime, images: dict[str, str], databases: Databases
) -> None:
    """The control: the emptyDir is writable, so the message above is about the path."""
    plan = _gateway_with(runtime, images, databases, "/tmp")
    assert "/tmp" in plan.container().writable
    runtime.start_pod(plan)
    try:
        startup_only = plan.container().probes["startup"]
        plan.container().probes = {"startup": startup_only}
        wait_ready(runtime, plan, timeout_s=60)
    finally:
        runtime.remove_pod(plan)
