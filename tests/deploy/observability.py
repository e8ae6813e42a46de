"""What the observability tests check against: the metrics the code really exports,
the metric names and labels a PromQL expression uses, and Markdown anchors.

Why scan the sources instead of importing the services: some metrics live on a
per-app registry, some are produced by a collector at scrape time, and the scan
sees every `prometheus_client` constructor whether or not its module can be
imported here. test_observability.py cross-checks the scan against a live
registry, so the scanner cannot drift from what prometheus_client exposes.

PromQL is parsed with promql-parser (the Rust parser of GreptimeDB), not
matched with regexes, so `sum by (pool) (...)` or `on()` never looks like a
metric and every metric inside a function call or subquery is found.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser

# Constructor -> metric type, for prometheus_client's metrics and metric families.
CONSTRUCTORS = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "Summary": "summary",
    "Info": "info",
    "Enum": "stateset",
    "CounterMetricFamily": "counter",
    "GaugeMetricFamily": "gauge",
    "HistogramMetricFamily": "histogram",
    "SummaryMetricFamily": "summary",
    "InfoMetricFamily": "info",
    "StateSetMetricFamily": "stateset",
    "GaugeHistogramMetricFamily": "gaugehistogram",
    "UnknownMetricFamily": "unknown",
}
# Where the labels argument sits when given by position.
LABELS_POSITION = {"Counter": 2, "Gauge": 2, "Histogram": 2, "Summary": 2, "Info": 2, "Enum": 2}
FAMILY_LABELS_POSITION = {"CounterMetricFamily": 3, "GaugeMetricFamily": 3}

# Labels Prometheus attaches to every scraped series (prometheus-operator's
# ServiceMonitor/PodMonitor and the usual pod annotation scrape configs).
TARGET_LABELS = frozenset(
    {"namespace", "pod", "job", "instance", "service", "container", "endpoint"}
)

# Grafana's interval variables stand where PromQL wants a duration.
GRAFANA_DURATIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@dataclass(frozen=True)
class Metric:
    """One exposed series name: its family's type and labels, and where it is defined."""

    name: str
    type: str
    labels: frozenset[str]
    source: str


@dataclass
class Scan:
    metrics: dict[str, Metric] = field(default_factory=dict)
    # Constructors whose name the scan could not read (not a string literal).
    unresolved: list[str] = field(default_factory=list)


def exposed_names(name: str, kind: str, family: bool) -> list[str]:
    """The series names prometheus_client writes for one metric."""
    if kind == "counter":
        base = name.removesuffix("_total")
        return [f"{base}_total"] if family else [f"{base}_total", f"{base}_created"]
    if kind in ("histogram", "gaugehistogram"):
        names = [f"{name}_bucket", f"{name}_count", f"{name}_sum"]
        if kind == "gaugehistogram":
            names = [f"{name}_bucket", f"{name}_gcount", f"{name}_gsum"]
        return names if family else [*names, f"{name}_created"]
    if kind == "summary":
        names = [f"{name}_count", f"{name}_sum"]
        return names if family else [*names, f"{name}_created"]
    if kind == "info":
        return [name if name.endswith("_info") else f"{name}_info"]
    return [name]


def _prometheus_imports(tree: ast.Module) -> tuple[dict[str, str], set[str]]:
    """(local name -> constructor) imported from prometheus_client, and module aliases."""
    names: dict[str, str] = {}
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prometheus_client"):
            for alias in node.names:
                if alias.name in CONSTRUCTORS:
                    names[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("prometheus_client"):
                    modules.add(alias.asname or alias.name)
    return names, modules


def _constructor(call: ast.Call, names: dict[str, str], modules: set[str]) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return names.get(func.id)
    if isinstance(func, ast.Attribute) and func.attr in CONSTRUCTORS:
        root = func.value
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and (root.id in modules or root.id in ("prometheus_client",)):
            return func.attr
    return None


def _argument(call: ast.Call, keyword: str, position: int | None) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


def _string(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _labels(call: ast.Call, constructor: str) -> frozenset[str] | None:
    if constructor.endswith("MetricFamily"):
        node = _argument(call, "labels", FAMILY_LABELS_POSITION.get(constructor))
    else:
        node = _argument(call, "labelnames", LABELS_POSITION.get(constructor))
    if node is None or (isinstance(node, ast.Constant) and node.value is None):
        return frozenset()
    if isinstance(node, ast.List | ast.Tuple):
        values = [_string(e) for e in node.elts]
        if all(v is not None for v in values):
            return frozenset(v for v in values if v is not None)
    return None


def _full_name(call: ast.Call, name: str) -> str | None:
    """namespace_subsystem_name[_unit], as prometheus_client builds it."""
    parts = []
    for keyword in ("namespace", "subsystem"):
        node = _argument(call, keyword, None)
        if node is not None:
            value = _string(node)
            if value is None:
                return None
            if value:
                parts.append(value)
    full = "_".join([*parts, name])
    unit = _string(_argument(call, "unit", None))
    if unit and not full.endswith(f"_{unit}"):
        full = f"{full}_{unit}"
    return full


def scan_sources(roots: list[Path]) -> Scan:
    """Every metric a prometheus_client constructor under `roots` exposes."""
    scan = Scan()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "tests" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            names, modules = _prometheus_imports(tree)
            if not names and not modules:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    _record(scan, node, names, modules, path)
    return scan


def _record(scan: Scan, call: ast.Call, names: dict[str, str], modules: set[str], path: Path):
    constructor = _constructor(call, names, modules)
    if constructor is None:
        return
    where = f"{path}:{call.lineno}"
    name = _string(_argument(call, "name", 0))
    full = _full_name(call, name) if name is not None else None
    labels = _labels(call, constructor)
    if full is None or labels is None:
        scan.unresolved.append(f"{where}: {constructor}(...) with a name or labels not literal")
        return
    kind = CONSTRUCTORS[constructor]
    for exposed in exposed_names(full, kind, constructor.endswith("MetricFamily")):
        scan.metrics[exposed] = Metric(exposed, kind, labels, where)


# --- PromQL ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """A metric selector in an expression: the name and the label names it matches on."""

    name: str
    labels: frozenset[str]


@dataclass(frozen=True)
class Grouping:
    """`by (...)` of an aggregation, and the metric names aggregated under it."""

    labels: frozenset[str]
    metrics: frozenset[str]
    added: frozenset[str]  # labels created inside by label_replace / label_join


def grafana_to_promql(expr: str) -> str:
    """A Grafana query with its interval variables replaced by durations."""
    for variable, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(variable, duration)
    return expr


def parse(expr: str) -> Any:
    """Parse PromQL (raises ValueError with the parser's message)."""
    try:
        return promql_parser.parse(expr)
    except Exception as exc:  # the binding raises a plain Exception subclass
        raise ValueError(f"{exc}: {expr}") from exc


def _nodes(node: Any) -> Iterator[Any]:
    found: list[Any] = []
    promql_parser.walk(node, lambda n: found.append(n))
    return iter(found)


def selectors(tree: Any) -> list[Selector]:
    result = []
    for node in _nodes(tree):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {m.name for m in node.matchers.matchers} - {"__name__"}
            name = node.name or next(
                (m.value for m in node.matchers.matchers if m.name == "__name__"), ""
            )
            result.append(Selector(name, frozenset(matchers)))
    return result


LABEL_FUNCTIONS = ("label_replace", "label_join")


def _added_labels(tree: Any) -> set[str]:
    added = set()
    for node in _nodes(tree):
        if isinstance(node, promql_parser.Call) and node.func.name in LABEL_FUNCTIONS:
            target = node.args[1]
            if isinstance(target, promql_parser.StringLiteral):
                added.add(target.val)
    return added


def groupings(tree: Any) -> list[Grouping]:
    result = []
    for node in _nodes(tree):
        if not isinstance(node, promql_parser.AggregateExpr) or node.modifier is None:
            continue
        if node.modifier.type != promql_parser.AggModifierType.By:
            continue
        inner = selectors(node.expr)
        result.append(
            Grouping(
                frozenset(node.modifier.labels),
                frozenset(s.name for s in inner),
                frozenset(_added_labels(node.expr)),
            )
        )
    return result


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<query>.+?)\s*,\s*(?P<label>\w+)\s*\)\s*$")
QUERY_RESULT = re.compile(r"^\s*query_result\((?P<query>.+)\)\s*$")


def variable_query(query: Any) -> str | None:
    """The PromQL inside a Grafana variable query (label_values / query_result)."""
    text = query.get("query", "") if isinstance(query, dict) else str(query or "")
    for pattern in (LABEL_VALUES, QUERY_RESULT):
        match = pattern.match(text)
        if match:
            return match.group("query")
    return None


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable of a dashboard."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                where = f"panel {panel['id']} {panel.get('title')!r} {target.get('refId')}"
                yield where, grafana_to_promql(target["expr"])
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            query = variable_query(variable.get("query"))
            if query is None:
                yield f"variable {variable['name']}", "<not a label_values/query_result query>"
            else:
                yield f"variable {variable['name']}", grafana_to_promql(query)


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, the ones nested in collapsed rows included."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


# --- Markdown -------------------------------------------------------------------------

HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def markdown_anchors(text: str) -> set[str]:
    anchors: set[str] = set()
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else HEADING.match(line)
        if match:
            anchors.add(github_anchor(match.group("text")))
    return anchors


# --- prometheus-operator objects ---------------------------------------------------------
# Written from the monitoring.coreos.com/v1 API for the fields this chart uses,
# closed (additionalProperties: false) so that a typo fails as the API server's
# strict field validation would. Not the full CRDs: a field the chart starts
# using must be added here on purpose.

DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
    r"(([0-9]+)s)?(([0-9]+)ms)?)$",
}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    "required": ["name"],
    "additionalProperties": False,
}
LABEL_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": STRING_MAP, "matchExpressions": {"type": "array"}},
    "additionalProperties": False,
}
NAMESPACE_SELECTOR = {
    "type": "object",
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}
ENDPOINT = {
    "type": "object",
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "scheme": {"enum": ["http", "https"]},
        "interval": DURATION,
        "scrapeTimeout": DURATION,
        "honorLabels": {"type": "boolean"},
        "relabelings": {"type": "array"},
        "metricRelabelings": {"type": "array"},
    },
    "required": ["port"],
    "additionalProperties": False,
}


def _monitor(kind: str, endpoints: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "properties": {
                    "selector": LABEL_SELECTOR,
                    "namespaceSelector": NAMESPACE_SELECTOR,
                    endpoints: {"type": "array", "items": ENDPOINT, "minItems": 1},
                    "jobLabel": {"type": "string"},
                },
                "required": ["selector", endpoints],
                "additionalProperties": False,
            },
        },
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
    }


RULE = {
    "type": "object",
    "properties": {
        "alert": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"},
        "record": {"type": "string"},
        "expr": {"type": "string", "minLength": 1},
        "for": DURATION,
        "keep_firing_for": DURATION,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    "required": ["expr"],
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "additionalProperties": False,
}
PROMETHEUS_RULE = {
    "type": "object",
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "rules": {"type": "array", "items": RULE},
                        },
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["groups"],
            "additionalProperties": False,
        },
    },
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
}
MONITORING_SCHEMAS = {
    "PrometheusRule": PROMETHEUS_RULE,
    "ServiceMonitor": _monitor("ServiceMonitor", "endpoints"),
    "PodMonitor": _monitor("PodMonitor", "podMetricsEndpoints"),
}
