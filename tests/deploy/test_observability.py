"""Dashboards, alerts and monitors: valid, wired to metrics that exist, linked to the runbook.

- Every dashboard is Grafana JSON with a title, a unique uid and unique panel ids.
- Every PromQL expression (dashboard panels and variables, rendered alert rules)
  parses, and names only metrics the code exports (found by scanning the
  services for prometheus_client constructors), with labels those metrics have.
  Two short, explicit allow-lists: metrics another service is about to export
  (PENDING) and metrics from outside Relay (EXTERNAL).
- Every alert has a severity, a `for`, a summary and a runbook_url whose anchor
  is a heading of docs/runbook.md.
- The chart renders nothing new by default, and with the three flags on renders
  objects that pass the policy checks, Kubernetes' schemas, and closed schemas
  of the prometheus-operator kinds.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate import utils as kv_utils
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from tests.deploy import observability as obs
from tests.deploy import policy
from tests.deploy.chart import (
    CHART_DIR,
    CI_VALUES_FILES,
    REPO,
    Render,
    load_chart,
    load_values,
    render_values,
)

DASHBOARD_DIR = CHART_DIR / "dashboards"
DASHBOARD_FILES = sorted(p.name for p in DASHBOARD_DIR.glob("*.json"))
RUNBOOK = REPO / "docs" / "runbook.md"
SOURCE_ROOTS = [REPO / "services", REPO / "libs"]

# Metrics dashboards and alerts may use before any code exports them: metric ->
# the service that will export it. Keep this short; an entry stops mattering
# (the scanned definition wins) as soon as the service exports the metric.
PENDING: dict[str, tuple[str, frozenset[str]]] = {}
# Metrics from outside Relay: metric -> who provides it, and its labels.
EXTERNAL = {
    "up": ("Prometheus itself, per scrape target", obs.TARGET_LABELS),
    "kube_pod_status_ready": ("kube-state-metrics", frozenset({"condition", "uid"})),
}

ALERTS = {
    "RelayGatewayDown",
    "RelayGatewayHighErrorRate",
    "RelayKillSwitchOn",
    "RelayRunnersSaturated",
    "RelayQueueBacklogGrowing",
    "RelayRunsFailingHigh",
    "RelayDeadLetters",
    "RelayCircuitBreakerOpen",
    "RelayCostBurnHigh",
    "RelayEventsSlowSubscribersDropped",
    "RelayStateReconcilerReenqueuing",
    "RelayTraceSpansDropped",
    "RelayDependencyUnready",
}
SEVERITIES = {"critical", "warning", "info"}

SCRAPERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
ALL_ON: dict[str, Any] = {
    "observability": {
        "dashboards": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    },
    "networkPolicy": {"metricsScrapers": SCRAPERS},
}
MONITORING_KINDS = set(obs.MONITORING_SCHEMAS)
CRD_KINDS = {"ScaledObject", "TriggerAuthentication"}  # test_chart_schemas.py covers them


def with_values(*overrides: dict[str, Any]) -> dict[str, Any]:
    values = copy.deepcopy(ALL_ON)
    for override in overrides:
        _merge(values, override)
    return values


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


@functools.cache
def rendered_on() -> Render:
    return render_values(ALL_ON, label="observability on")


@functools.cache
def scan() -> obs.Scan:
    return obs.scan_sources(SOURCE_ROOTS)


def known_metrics() -> dict[str, frozenset[str] | None]:
    """metric -> its labels (None: do not check labels)."""
    known: dict[str, frozenset[str] | None] = {
        name: labels for name, (_, labels) in {**PENDING, **EXTERNAL}.items()
    }
    known.update({name: m.labels for name, m in scan().metrics.items()})
    return known


def load_dashboard(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARD_DIR / name).read_text())


def rules(render: Render) -> list[dict[str, Any]]:
    return [
        rule
        for obj in render.of_kind("PrometheusRule")
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
    ]


def promql_problems(where: str, expr: str) -> list[str]:
    """What is wrong with one expression: syntax, unknown metrics, unknown labels."""
    try:
        tree = obs.parse(expr)
    except ValueError as exc:
        return [f"{where}: does not parse: {exc}"]
    known = known_metrics()
    problems = []
    for selector in obs.selectors(tree):
        if selector.name not in known:
            problems.append(f"{where}: metric {selector.name} is exported by no service")
            continue
        labels = _labels_of(selector.name, known)
        if labels is not None and not selector.labels <= labels:
            problems.append(
                f"{where}: {selector.name} has no label {sorted(selector.labels - labels)}"
            )
    for grouping in obs.groupings(tree):
        available = set(grouping.added)
        for name in grouping.metrics:
            labels = _labels_of(name, known) if name in known else None
            available |= set(labels if labels is not None else grouping.labels)
        if not grouping.labels <= available:
            problems.append(
                f"{where}: by {sorted(grouping.labels - available)} over "
                f"{sorted(grouping.metrics)}, which have no such label"
            )
    return problems


def _labels_of(name: str, known: dict[str, frozenset[str] | None]) -> frozenset[str] | None:
    labels = known[name]
    if labels is None:
        return None
    extra = {"le"} if name.endswith("_bucket") else set()
    return labels | obs.TARGET_LABELS | extra


# --- the metric scan ------------------------------------------------------------------


def test_exposed_names_match_prometheus_client() -> None:
    """The suffix rules of the scan are prometheus_client's own."""
    registry = CollectorRegistry()
    Counter("t_requests", "", registry=registry)
    Counter("t_jobs_total", "", registry=registry)
    Gauge("t_open", "", registry=registry)
    Histogram("t_seconds", "", registry=registry)
    Summary("t_size", "", registry=registry)
    Info("t_build", "", registry=registry)
    Enum("t_state", "", states=["a", "b"], registry=registry)
    exposed = {s.name for family in registry.collect() for s in family.samples}
    expected = {
        *obs.exposed_names("t_requests", "counter", False),
        *obs.exposed_names("t_jobs_total", "counter", False),
        *obs.exposed_names("t_open", "gauge", False),
        *obs.exposed_names("t_seconds", "histogram", False),
        *obs.exposed_names("t_size", "summary", False),
        *obs.exposed_names("t_build", "info", False),
        *obs.exposed_names("t_state", "stateset", False),
    }
    assert exposed == expected
    families = [
        CounterMetricFamily("f_delivered", "", 1),
        CounterMetricFamily("f_sent_total", "", 1),
        GaugeMetricFamily("f_open", "", 1),
    ]
    assert {s.name for f in families for s in f.samples} == {
        *obs.exposed_names("f_delivered", "counter", True),
        *obs.exposed_names("f_sent_total", "counter", True),
        *obs.exposed_names("f_open", "gauge", True),
    }


def test_scan_reads_every_constructor_and_agrees_with_live_registries() -> None:
    from relay_core.fanout import HubStats
    from relay_events.metrics import EventsMetrics
    from relay_gateway.metrics import GatewayMetrics

    result = scan()
    assert not result.unresolved, "\n".join(result.unresolved)
    stats = HubStats(
        subscribers=1,
        runs=1,
        live_runs=1,
        delivered=1,
        dropped=0,
        redis_connections=1,
        reader_connected=True,
    )
    registries = [GatewayMetrics().registry, EventsMetrics(lambda: stats).registry]
    live = {
        sample.name: family.type
        for registry in registries
        for family in registry.collect()
        for sample in family.samples
    }
    assert live, "the live registries exposed nothing"
    missing = {name for name in live if name not in result.metrics}
    assert not missing, f"exported but not found by the scan: {sorted(missing)}"
    for name, kind in live.items():
        assert result.metrics[name].type == kind, name
    # The names the autoscalers and the brief rely on.
    for name in (
        "relay_runner_runs_in_flight",
        "relay_runner_capacity",
        "relay_gateway_streams_open",
        "relay_gateway_requests_in_flight",
        "relay_events_subscribers",
    ):
        assert name in result.metrics, name
    assert result.metrics["relay_runner_capacity"].labels == {"pool"}


def test_allow_lists_are_short_and_used() -> None:
    assert len(PENDING) <= 2 and all(name.startswith("relay_queue_") for name in PENDING)
    assert len(EXTERNAL) <= 2
    used = {s.name for _, expr in all_expressions() for s in obs.selectors(obs.parse(expr))}
    assert set(PENDING) <= used, "an allow-listed metric nothing uses: remove it"
    assert set(EXTERNAL) <= used, "an allow-listed metric nothing uses: remove it"


def all_expressions() -> list[tuple[str, str]]:
    found = [
        (f"{name} {where}", expr)
        for name in DASHBOARD_FILES
        for where, expr in obs.dashboard_queries(load_dashboard(name))
    ]
    found += [(f"alert {r['alert']}", r["expr"]) for r in rules(rendered_on())]
    return found


def test_promql_checker_catches_mistakes() -> None:
    """The expression check is not a rubber stamp."""
    assert promql_problems("ok", "sum by (pool) (relay_runner_capacity{namespace='x'})") == []
    assert "does not parse" in promql_problems("x", "sum(rate(relay_runner_capacity[5m])")[0]
    assert "exported by no service" in promql_problems("x", "relay_runner_capacity_total")[0]
    assert "no label" in promql_problems("x", 'relay_runner_capacity{status="x"}')[0]
    assert "no such label" in promql_problems("x", "sum by (route) (relay_events_subscribers)")[0]
    assert promql_problems("x", 'sum by (c) (label_replace(up, "c", "$1", "job", "(.*)"))') == []


# --- dashboards -----------------------------------------------------------------------


def test_there_are_dashboards() -> None:
    assert {"relay-overview.json", "relay-runners.json", "relay-events.json"} <= set(
        DASHBOARD_FILES
    )
    assert "relay-state.json" in DASHBOARD_FILES


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_is_well_formed(name: str) -> None:
    dashboard = load_dashboard(name)
    assert dashboard.get("title"), "no title"
    assert dashboard.get("uid") and len(dashboard["uid"]) <= 40
    panels = list(obs.all_panels(dashboard))
    ids: list[int] = [p["id"] for p in panels if isinstance(p.get("id"), int)]
    assert len(ids) == len(panels), "a panel without an integer id"
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in panels:
        assert panel.get("title"), f"panel {panel['id']} has no title"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['title']!r} overflows the grid"
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        assert all(t.get("expr") for t in panel["targets"]), panel["title"]


def test_dashboard_uids_and_titles_are_unique() -> None:
    dashboards = [load_dashboard(name) for name in DASHBOARD_FILES]
    assert len({d["uid"] for d in dashboards}) == len(dashboards)
    assert len({d["title"] for d in dashboards}) == len(dashboards)


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_queries_use_real_metrics(name: str) -> None:
    problems = [
        p
        for where, expr in obs.dashboard_queries(load_dashboard(name))
        for p in promql_problems(where, expr)
    ]
    assert not problems, "\n".join(problems)


# --- alert rules ------------------------------------------------------------------------


def test_alert_rules_use_real_metrics() -> None:
    problems = [p for r in rules(rendered_on()) for p in promql_problems(r["alert"], r["expr"])]
    assert not problems, "\n".join(problems)


def test_alert_rules_are_complete_and_link_the_runbook() -> None:
    found = rules(rendered_on())
    names = [r["alert"] for r in found]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) == ALERTS
    anchors = obs.markdown_anchors(RUNBOOK.read_text())
    base = load_chart().values["observability"]["prometheusRule"]["runbookBaseUrl"]
    problems = []
    for rule in found:
        name = rule["alert"]
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {rule.get('labels', {}).get('severity')!r}")
        if not rule.get("for"):
            problems.append(f"{name}: no `for`")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            if not annotations.get(key):
                problems.append(f"{name}: no {key}")
        url, _, anchor = annotations.get("runbook_url", "").partition("#")
        if url != base:
            problems.append(f"{name}: runbook_url {url!r} is not {base!r}")
        if anchor not in anchors:
            problems.append(f"{name}: docs/runbook.md has no heading with anchor #{anchor}")
    assert not problems, "\n".join(problems)


def test_rule_values_reach_the_rules() -> None:
    render = render_values(
        with_values(
            {
                "observability": {
                    "prometheusRule": {
                        "runbookBaseUrl": "https://docs.example.org/relay/runbook/",
                        "alertLabels": {"team": "relay", "severity": "ignored"},
                        "disabled": ["RelayDependencyUnready", "RelayCostBurnHigh"],
                        "thresholds": {"costUsdPerMinute": 12.5, "gatewayErrorRatio": 0.02},
                        "labels": {"release": "kube-prometheus-stack"},
                    }
                }
            }
        )
    )
    (rule_object,) = render.of_kind("PrometheusRule")
    assert rule_object["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    by_name = {r["alert"]: r for r in rules(render)}
    assert set(by_name) == ALERTS - {"RelayDependencyUnready", "RelayCostBurnHigh"}
    # The platform group had one alert: it is left out rather than rendered empty.
    assert all(g["rules"] for g in rule_object["spec"]["groups"])
    gateway = by_name["RelayGatewayHighErrorRate"]
    assert gateway["labels"] == {"severity": "critical", "team": "relay"}
    assert "> 0.02" in gateway["expr"] and "2%" in gateway["annotations"]["description"]
    assert gateway["annotations"]["runbook_url"] == (
        "https://docs.example.org/relay/runbook#relaygatewayhigherrorrate"
    )
    tokens = render_values(
        with_values(
            {"observability": {"prometheusRule": {"thresholds": {"costUsdPerMinute": 2e3}}}}
        )
    )
    (cost,) = [r for r in rules(tokens) if r["alert"] == "RelayCostBurnHigh"]
    assert "relay_runner_cost_usd_total" in cost["expr"] and cost["expr"].endswith("> 2000")


def test_rules_select_this_release_only() -> None:
    render = render_values(with_values({"fullnameOverride": "acme"}), label="fullnameOverride")
    for rule in rules(render):
        for selector in obs.selectors(obs.parse(rule["expr"])):
            assert "namespace" in selector.labels and "pod" in selector.labels, rule["alert"]
        assert 'pod=~"acme-(' in rule["expr"], rule["alert"]


# --- the chart -----------------------------------------------------------------------------


def test_nothing_is_rendered_by_default(render: Render) -> None:
    """Every values file of the ci/ matrix leaves observability off."""
    assert not [o for o in render.objects if o["kind"] in MONITORING_KINDS]
    assert not [
        o
        for o in render.of_kind("ConfigMap")
        if "grafana_dashboard" in o["metadata"].get("labels", {})
    ]


def test_flags_off_render_nothing() -> None:
    render = render_values(
        {"networkPolicy": {"metricsScrapers": SCRAPERS}, "observability": {}}, label="off"
    )
    assert not [o for o in render.objects if o["kind"] in MONITORING_KINDS]
    assert not [o for o in render.of_kind("ConfigMap") if "grafana" in o["metadata"]["name"]]


def test_dashboards_ship_as_sidecar_configmaps() -> None:
    maps = {
        o["metadata"]["name"]: o
        for o in rendered_on().of_kind("ConfigMap")
        if o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    }
    assert len(maps) == len(DASHBOARD_FILES)
    shipped = {key: value for cm in maps.values() for key, value in cm["data"].items()}
    assert set(shipped) == set(DASHBOARD_FILES)
    for name, text in shipped.items():
        assert json.loads(text) == load_dashboard(name), name
    custom = render_values(
        with_values(
            {
                "observability": {
                    "dashboards": {
                        "namespace": "grafana",
                        "labels": {"dashboards": "relay"},
                        "annotations": {"grafana_folder": "Relay"},
                    }
                }
            }
        )
    )
    (one, *_) = [o for o in custom.of_kind("ConfigMap") if "grafana" in o["metadata"]["name"]]
    assert one["metadata"]["namespace"] == "grafana"
    assert one["metadata"]["annotations"] == {"grafana_folder": "Relay"}
    assert one["metadata"]["labels"]["dashboards"] == "relay"


def test_monitors_select_every_scraped_component() -> None:
    render = rendered_on()
    services = {o["metadata"]["name"]: o for o in render.of_kind("Service")}
    deployments = {o["metadata"]["name"]: o for o in render.of_kind("Deployment")}
    monitors = {o["metadata"]["name"]: o for o in render.objects if o["kind"] in MONITORING_KINDS}
    expected = {
        "relay-gateway": "ServiceMonitor",
        "relay-events": "ServiceMonitor",
        "relay-state": "ServiceMonitor",
        "relay-runner-interactive": "PodMonitor",
        "relay-runner-background": "PodMonitor",
    }
    assert {n: m["kind"] for n, m in monitors.items() if m["kind"] != "PrometheusRule"} == expected
    for name, kind in expected.items():
        spec = monitors[name]["spec"]
        match = spec["selector"]["matchLabels"]
        assert spec["namespaceSelector"] == {"matchNames": ["relay"]}
        if kind == "ServiceMonitor":
            selected = [s for s in services.values() if _matches(match, s["metadata"]["labels"])]
            assert [s["metadata"]["name"] for s in selected] == [name]
            ports = {p["name"] for p in selected[0]["spec"]["ports"]}
            endpoints = spec["endpoints"]
        else:
            selected = [
                d
                for d in deployments.values()
                if _matches(match, d["spec"]["template"]["metadata"]["labels"])
            ]
            assert [d["metadata"]["name"] for d in selected] == [name]
            container = selected[0]["spec"]["template"]["spec"]["containers"][0]
            ports = {p["name"] for p in container["ports"]}
            endpoints = spec["podMetricsEndpoints"]
        # /metrics is on the management port, never the public one ("http")
        assert [(e["port"], e["path"]) for e in endpoints] == [("management", "/metrics")]
        assert "management" in ports


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_monitors_follow_enabled_components() -> None:
    render = render_values(with_values({"runnerInteractive": {"enabled": False}}))
    names = {o["metadata"]["name"] for o in render.of_kind("PodMonitor")}
    assert names == {"relay-runner-background"}


def test_service_monitors_need_a_way_through_the_network_policies() -> None:
    values = with_values({"networkPolicy": {"metricsScrapers": []}})
    with pytest.raises(helm.HelmError, match=r"networkPolicy\.metricsScrapers"):
        render_values(values)
    values["networkPolicy"]["enabled"] = False
    assert render_values(values).of_kind("ServiceMonitor")


@functools.cache
def rendered_on_top_of(values_file: str) -> Render:
    """A ci/ values file with the three flags on (and scrapers, which the monitors need)."""
    values = load_values(values_file)
    _merge(values, {"observability": ALL_ON["observability"]})
    values.setdefault("networkPolicy", {}).setdefault("metricsScrapers", SCRAPERS)
    return render_values(values, label=f"{values_file} + observability")


@pytest.mark.parametrize("values_file", CI_VALUES_FILES)
@pytest.mark.parametrize("check", sorted(policy.ALL_CHECKS))
def test_policies_hold_with_observability_on(values_file: str, check: str) -> None:
    render = rendered_on_top_of(values_file)
    assert {o["kind"] for o in render.objects} >= MONITORING_KINDS
    if check == "network_policies":
        scrapers = load_chart().merge_values(render.values)["networkPolicy"]["metricsScrapers"]
        problems = policy.check_network_policies(render.objects, scrapers)
    else:
        problems = policy.ALL_CHECKS[check](render.objects)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("version", (kv_utils.all_versions()[0], kv_utils.latest_version()))
def test_builtin_objects_validate_strictly(version: str) -> None:
    errors = []
    for obj in rendered_on().objects:
        if obj["kind"] in MONITORING_KINDS | CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kv_utils.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def monitoring_errors(obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(obs.MONITORING_SCHEMAS[obj["kind"]])
    return [
        f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


def test_monitoring_objects_validate() -> None:
    objects = [o for o in rendered_on().objects if o["kind"] in MONITORING_KINDS]
    assert {o["kind"] for o in objects} == MONITORING_KINDS
    errors = [e for obj in objects for e in monitoring_errors(obj)]
    assert not errors, "\n".join(errors)


def test_monitoring_schemas_reject_mistakes() -> None:
    (rule_object,) = rendered_on().of_kind("PrometheusRule")
    bad = copy.deepcopy(rule_object)
    bad["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    bad["spec"]["groups"][0]["rules"][0]["severity"] = "critical"
    errors = "\n".join(monitoring_errors(bad))
    assert "five minutes" in errors and "severity" in errors
    monitor = copy.deepcopy(rendered_on().get("ServiceMonitor", "relay-gateway"))
    monitor["spec"]["endpoints"][0]["targetPort"] = 8080
    assert any("targetPort" in e for e in monitoring_errors(monitor))


def test_lint_strict_with_observability_on() -> None:
    oldest = f"v{kv_utils.all_versions()[0]}"
    report = helm.lint(CHART_DIR, ALL_ON, strict=True, kube_version=oldest)
    findings = [m for m in report["messages"] if m["severity"] >= 2]
    assert not findings and not report["errors"], report


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"prometheusRule": {"thresholds": {"gatewayErrorRatio": 5}}}, "gatewayErrorRatio"),
        ({"prometheusRule": {"runbookBaseUrl": "docs/runbook.md"}}, "runbookBaseUrl"),
        ({"prometheusRule": {"runbookBaseUrl": "https://x.org/r.md#top"}}, "runbookBaseUrl"),
        ({"serviceMonitor": {"interval": "30"}}, "interval"),
        ({"dashboards": {"enabled": True, "label": {"a": "b"}}}, "label"),
    ],
)
def test_values_schema_refuses(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render_values(with_values({"observability": values}))


def test_schema_documents_the_block() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    block = schema["properties"]["observability"]
    assert block["additionalProperties"] is False
    defaults = load_chart().values["observability"]
    assert not any(
        defaults[k]["enabled"] for k in ("dashboards", "serviceMonitor", "prometheusRule")
    )
    jsonschema.Draft7Validator(block).validate(defaults)
