"""Finding 5: operational endpoints on the public path.

`/metrics` answered on the gateway's public port without a key, the chart's
Ingress routed every path to the gateway (so metrics would be public), and
`/healthz` published the kill switch and the pool's capacity to anyone. Now
every service serves its probes, `/metrics` and the detailed `/healthz` on a
management port (relay_core.httpserver) that neither the Service's public
port nor the Ingress exposes; the public port keeps a `/healthz` that says
only `ok`.
"""

from __future__ import annotations

import httpx
import pytest

from relay_devstack.stack import Stack
from tests.deploy.chart import CI_VALUES_FILES, render_file
from tests.deploy.policy import route

MANAGEMENT_PATHS = ("/metrics", "/livez", "/readyz")


@pytest.mark.parametrize("service", ["gateway", "events", "state"])
def test_metrics_are_on_the_management_port_only(security_stack: Stack, service: str) -> None:
    public, mgmt = security_stack.url(service), security_stack.management_url(service)
    assert public != mgmt
    with httpx.Client(timeout=5) as client:
        for path in MANAGEMENT_PATHS:
            assert client.get(public + path).status_code == 404, path
            assert client.get(mgmt + path).status_code == 200, path
        assert client.get(public + "/healthz").json() == {"status": "ok"}
        assert "relay_http_connections_open" in client.get(mgmt + "/metrics").text


def test_the_detailed_health_is_not_public(security_stack: Stack) -> None:
    with httpx.Client(timeout=5) as client:
        detailed = client.get(security_stack.management_url("gateway") + "/healthz").json()
        public = client.get(security_stack.gateway_url + "/healthz").json()
    assert {"kill_switch", "interactive_capacity"} <= set(detailed)
    assert public == {"status": "ok"}


@pytest.mark.parametrize("values_file", CI_VALUES_FILES)
def test_the_rendered_ingress_routes_no_management_path(values_file: str) -> None:
    render = render_file(values_file)
    ingresses = render.of_kind("Ingress")
    for ingress in ingresses:
        for path in (*MANAGEMENT_PATHS, "/", "/internal/v1/ready"):
            assert route(ingress, path) is None, (values_file, path)
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["port"] == {"name": "http"}, path
    for service in render.of_kind("Service"):
        for port in service["spec"]["ports"]:
            # a Service's public port leads to the container's public port only
            assert port["name"] != "http" or port["targetPort"] == "http", service
    for deployment in render.of_kind("Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if "management" in ports:
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert container[probe]["httpGet"]["port"] == "management", (deployment, probe)


def test_some_values_file_renders_an_ingress() -> None:
    assert any(render_file(f).of_kind("Ingress") for f in CI_VALUES_FILES)
