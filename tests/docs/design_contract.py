"""What docs/design.md must name, read from the code, and the check itself.

Each `Item` is one thing the code has (a route, an event type, a payload
field, a Redis key, a reason, a status, a table column) and how to find it in
the document: a regular expression. `missing(doc, items)` is the check; the
tests feed it the real document, and documents with one item taken out.

Everything is derived, nothing is listed here: the routes from the gateway's
and the events service's FastAPI apps, the events from `relay_core.events`
(its `EventType` and the data its builders produce), the Redis keys by
calling every function of `relay_core.keys` with placeholders, the reasons
from the `Literal` lists the code must use, the tables and columns from the
SQL migrations.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "design.md"
MIGRATIONS = REPO / "services" / "state" / "src" / "relay_state" / "migrations"


@dataclass(frozen=True)
class Item:
    kind: str  # route, event, event field, redis key, reason, status, table, column
    name: str  # what a reader is told is missing
    pattern: str  # a regular expression the document must match

    def found_in(self, doc: str) -> bool:
        return re.search(self.pattern, doc, flags=re.MULTILINE) is not None


def code_span(text: str) -> str:
    """`text` in backticks (the document's spelling of a name)."""
    return "`" + re.escape(text) + "`"


def missing(doc: str, items: Iterable[Item]) -> list[Item]:
    return [item for item in items if not item.found_in(doc)]


def in_section(title: str, pattern: str) -> str:
    """`pattern` inside the `## title` section (up to the next `## ` heading)."""
    return r"^## " + re.escape(title) + r"\s*$(?:(?!^## )[\s\S])*?" + pattern


API = "Public API"
EVENTS = "Events (SSE)"
REDIS = "Redis keys"
POSTGRES = "Postgres"
# Subsections of the public API section; the management apps' routes (probes,
# /metrics, the detailed /healthz) are named under "Management port".
SUBSECTIONS = {
    "gateway": "Gateway",
    "events": "Events service",
    "gateway-management": "Management port",
    "events-management": "Management port",
}


# Public routes


def api_routes(app: Any) -> list[tuple[str, set[str]]]:
    """(path template, methods) of every API route of a FastAPI app. FastAPI's
    own pages (`/docs`, `/redoc`, `/openapi.json`) are plain Starlette routes,
    not `APIRoute`s: they are left out. FastAPI >= 0.16x includes routers
    lazily (`app.routes` holds the inclusions); `iter_route_contexts`, what its
    OpenAPI generator walks, flattens them."""
    from fastapi import routing

    iter_contexts = getattr(routing, "iter_route_contexts", None)
    if iter_contexts is None:  # an older FastAPI: app.routes is flat
        return [
            (r.path, set(r.methods or ())) for r in app.routes if isinstance(r, routing.APIRoute)
        ]
    return [
        (ctx.path, set(ctx.methods or ()))
        for ctx in iter_contexts(app.routes)
        if isinstance(ctx.original_route, routing.APIRoute)
    ]


def routes(apps: dict[str, Any]) -> list[Item]:
    """Every `METHOD /path` of each app, named in its service's subsection of
    the public API section (`### Gateway`, `### Events service`)."""
    items = []
    for service, app in apps.items():
        heading = r"^### " + re.escape(SUBSECTIONS[service]) + r"\s*$(?:(?!^##)[\s\S])*?"
        for path, methods in api_routes(app):
            for method in sorted(methods):
                text = f"{method} {path}"
                pattern = in_section(API, heading + code_span(text))
                items.append(Item("route", f"{text} ({service})", pattern))
    return items


# Request and response fields

# FastAPI's own validation-error schemas: never answered (relay_core.errors
# reshapes a 422 into the one error shape).
_NOT_OURS = {"HTTPValidationError", "ValidationError"}


def api_fields(apps: dict[str, Any]) -> list[Item]:
    """Every property of the models in the apps' OpenAPI descriptions, named in
    backticks in the public API section, and every query, path and header
    parameter (any case: headers are spelt `Idempotency-Key` there)."""
    items: dict[str, Item] = {}
    for app in apps.values():
        spec = app.openapi()
        for schema, body in spec.get("components", {}).get("schemas", {}).items():
            if schema in _NOT_OURS:
                continue
            for prop in body.get("properties", {}):
                pattern = in_section(API, code_span(prop))
                items[f"{schema}.{prop}"] = Item("api field", f"{schema}.{prop}", pattern)
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                for param in operation.get("parameters", []):
                    name = param["name"]
                    where = f"{method.upper()} {path}: {name}"
                    pattern = in_section(API, "(?i:" + re.escape(name) + ")")
                    items.setdefault(name.lower(), Item("api parameter", where, pattern))
    return list(items.values())


# Events


def _placeholder(hint: Any) -> Any:
    """A value of the annotated type: a Literal's first value, else a plain one."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    if get_origin(hint) is Literal:
        return get_args(hint)[0]
    origin = get_origin(hint) or hint
    samples: dict[Any, Any] = {int: 1, float: 1.0, bool: True, str: "x", dict: {}, list: []}
    return samples.get(origin, "x")


def event_builders(module: types.ModuleType) -> dict[str, Callable[..., Any]]:
    """Event type -> its builder: the function of `module` named after the type
    that returns a `module.Event` (`relay_core.events.start`, ...)."""
    found: dict[str, Callable[..., Any]] = {}
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if name in get_args(module.EventType) and get_type_hints(fn).get("return") is module.Event:
            found[name] = fn
    return found


def built_event(fn: Callable[..., Any]) -> Any:
    """Call a builder with a value for every parameter, optional ones included,
    so the event carries every field it can."""
    hints = get_type_hints(fn)
    args = {name: _placeholder(hints[name]) for name in inspect.signature(fn).parameters}
    return fn(**args)


def _table_row(event_type: str) -> str:
    return in_section(EVENTS, r"^\|\s*" + code_span(event_type) + r"\s*\|")


def event_items(module: types.ModuleType) -> list[Item]:
    """Each event type (`module.EventType`) as a row of a table in the events
    section, and each field its builder puts in `data` named on that row."""
    types_ = sorted(get_args(module.EventType))
    items = [Item("event", t, _table_row(t)) for t in types_]
    for fn in event_builders(module).values():
        event = built_event(fn)
        for field in sorted(event.data):
            items.append(
                Item(
                    "event field",
                    f"{event.type}.{field}",
                    _table_row(event.type) + r"[^\n]*" + code_span(field),
                )
            )
    return items


# Redis keys

_SENTINEL = "\x00{}\x00"
_PLACEHOLDER = r"\{[^`{}\s]+\}"  # `{run_id}`, `{id}`: any name in braces
# A partition's hash tag (relay_core.partitions), braces included: the document
# names it as a placeholder, `relay:{partition}:events:{run_id}`.
_PARTITION_TAG = re.compile(r"\{p\d+\.\d+\}")


def _key_template(result: str, params: list[inspect.Parameter]) -> str:
    """A key built with sentinels, as a pattern: each argument may be named
    anything in the document (`{run_id}`, `{id}`), and so may a partition's
    hash tag; an argument that is a hash tag of its own (`relay:capacity:{pool}`,
    the braces are in the key) is one placeholder. The rest is exact."""
    for i in range(len(params)):
        result = result.replace("{" + _SENTINEL.format(i) + "}", _SENTINEL.format(i))
    pattern = _PLACEHOLDER.join(re.escape(piece) for piece in _PARTITION_TAG.split(result))
    for i in range(len(params)):
        pattern = pattern.replace(re.escape(_SENTINEL.format(i)), _PLACEHOLDER)
    return pattern


def _call(fn: Callable[..., str], params: list[inspect.Parameter], value: Any = None) -> str:
    """`fn` with a sentinel (or `value`) for each text argument and partition 0 for
    each `int` one (a partition number)."""
    args = [
        0 if p.annotation in (int, "int") else (_SENTINEL.format(i) if value is None else value)
        for i, p in enumerate(params)
    ]
    return fn(*args)


def _shown(built: str, params: list[inspect.Parameter]) -> str:
    for i, param in enumerate(params):
        built = built.replace("{" + _SENTINEL.format(i) + "}", "{" + param.name + "}")
        built = built.replace(_SENTINEL.format(i), "{" + param.name + "}")
    return _PARTITION_TAG.sub("{partition}", built)


def redis_keys(module: types.ModuleType) -> list[Item]:
    """Every name `module` (relay_core.keys) builds: its string constants, and
    what each function returns for placeholder arguments. A function that
    refuses a placeholder (`queue(pool, partition)` knows two pools) is
    called with each value of the module's own tuples of strings (`POOLS`)."""
    constants = {
        name: value
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and name != "PREFIX"
    }
    choices = [
        value
        for value in vars(module).values()
        if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value)
    ]
    items = {
        v: Item("redis key", f"{n} = {v}", in_section(REDIS, code_span(v)))
        for n, v in constants.items()
    }
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if fn.__module__ != module.__name__ or name.startswith("_"):
            continue
        params = list(inspect.signature(fn).parameters.values())
        try:
            built = _call(fn, params)
        except ValueError:
            for values in choices:
                for value in values:
                    key = _call(fn, params, value)
                    pattern = in_section(REDIS, "`" + _key_template(key, []) + "`")
                    shown = _shown(key, [])
                    items.setdefault(
                        shown, Item("redis key", f"{name}({value!r}) = {shown}", pattern)
                    )
            continue
        shown = _shown(built, params)
        pattern = in_section(REDIS, "`" + _key_template(built, params) + "`")
        items.setdefault(shown, Item("redis key", f"{name}() = {shown}", pattern))
    return list(items.values())


# Reasons and statuses


def literal_values(kind: str, alias: Any, section: str) -> list[Item]:
    return [Item(kind, v, in_section(section, code_span(v))) for v in get_args(alias)]


# Postgres

_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", re.DOTALL)
_ADD_COLUMN = re.compile(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+)")
_NOT_COLUMNS = {"UNIQUE", "PRIMARY", "CHECK", "CONSTRAINT", "FOREIGN", "EXCLUDE"}


def schema(sql_files: Iterable[Path]) -> dict[str, list[str]]:
    """Table -> columns, from the migrations in order."""
    tables: dict[str, list[str]] = {}
    for path in sorted(sql_files):
        sql = re.sub(r"--[^\n]*", "", path.read_text())
        for table, body in _CREATE.findall(sql):
            columns = tables.setdefault(table, [])
            for line in body.splitlines():
                word = line.strip().split(" ", 1)[0]
                if word and word.upper() not in _NOT_COLUMNS and re.fullmatch(r"\w+", word):
                    columns.append(word)
        for table, column in _ADD_COLUMN.findall(sql):
            tables.setdefault(table, []).append(column)
    return tables


def _section(heading_name: str) -> str:
    """The `### `name`` subsection of the Postgres section, up to the next heading."""
    heading = r"^### " + code_span(heading_name) + r"\s*$(?:(?!^#)[\s\S])*?"
    return in_section(POSTGRES, heading)


def tables(table_columns: dict[str, list[str]]) -> list[Item]:
    """A section per table, and each of its columns in backticks inside it."""
    items = []
    for table, columns in table_columns.items():
        items.append(Item("table", table, _section(table)))
        for column in columns:
            items.append(Item("column", f"{table}.{column}", _section(table) + code_span(column)))
    return items


# Everything


def build_apps() -> dict[str, Any]:
    from relay_events.app import create_app as create_events
    from relay_events.app import create_management_app as events_management
    from relay_events.config import EventsSettings
    from relay_gateway.app import create_app as create_gateway
    from relay_gateway.app import create_management_app as gateway_management
    from relay_gateway.config import GatewaySettings

    gateway = create_gateway(GatewaySettings(dev_mode=True))
    events = create_events(EventsSettings(dev_mode=True))
    return {
        "gateway": gateway,
        "events": events,
        "gateway-management": gateway_management(gateway),
        "events-management": events_management(events),
    }


def contract() -> list[Item]:
    from relay_core import errors, events, keys

    apps = build_apps()
    return [
        *routes(apps),
        *api_fields(apps),
        *event_items(events),
        *redis_keys(keys),
        *literal_values("api error reason", errors.ApiReason, API),
        *literal_values("run error reason", events.ErrorReason, EVENTS),
        *literal_values("run status", events.RunStatus, API),
        *tables(schema(MIGRATIONS.glob("*.sql"))),
    ]
