"""The chart's `otel` block: tracing off by default; with `otel.endpoint`, every
Relay service (not modelsim) gets OpenTelemetry's standard variables, its own
service name, and the OTLP headers from a Secret (never a value in the chart)."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.deploy.chart import render_file, render_values

SERVICES = {
    "relay-gateway": "relay-gateway",
    "relay-events": "relay-events",
    "relay-state": "relay-state",
    "relay-runner-background": "relay-runner-background",
    "relay-runner-interactive": "relay-runner-interactive",
}
ON = {
    "otel": {
        "endpoint": "http://otel-collector.monitoring:4318",
        "headersSecret": {"name": "otlp", "key": "headers"},
        "samplerArg": 0.25,
    }
}


def config(render: Any, name: str) -> dict[str, str]:
    return dict(render.get("ConfigMap", name)["data"])


def container_env(render: Any, name: str) -> dict[str, Any]:
    (container,) = render.get("Deployment", name)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def test_tracing_is_off_by_default() -> None:
    render = render_file("default-values.yaml")
    for cm in render.of_kind("ConfigMap"):
        assert not [k for k in cm.get("data", {}) if k.startswith("OTEL_")], cm["metadata"]["name"]
    for name in SERVICES:
        assert "OTEL_EXPORTER_OTLP_HEADERS" not in container_env(render, name)


def test_an_endpoint_turns_it_on_for_every_relay_service() -> None:
    render = render_values({**ON, "modelsim": {"enabled": True}}, label="otel on")
    for name, service_name in SERVICES.items():
        data = config(render, name)
        assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
        assert data["OTEL_SERVICE_NAME"] == service_name
        assert data["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert data["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
        assert data["RELAY_TRACE_CONTENT"] == "false"
        headers = container_env(render, name)["OTEL_EXPORTER_OTLP_HEADERS"]
        assert headers["valueFrom"]["secretKeyRef"] == {"name": "otlp", "key": "headers"}
    assert not [k for k in config(render, "relay-modelsim") if k.startswith("OTEL_")]


@pytest.mark.parametrize(
    "otel", [{"endpoint": "collector:4318"}, {"samplerArg": 2}, {"sampler": "sometimes"}]
)
def test_the_schema_refuses_bad_values(otel: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError, match="otel"):
        render_values({"otel": otel}, label="bad otel")
