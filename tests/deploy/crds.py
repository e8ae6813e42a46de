"""KEDA objects checked as the API server would: CRD schema and CEL rules.

kubernetes-validate does not know CRDs and passes a ScaledObject silently, so
the rendered KEDA objects are validated here against the vendored CRDs
(fixtures/keda): the `openAPIV3Schema`, closed so that unknown fields fail as
they would with strict field validation, and every `x-kubernetes-validations`
CEL rule, evaluated with cel-python at the place in the schema where the CRD
declares it (`self` is the object there).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

KEDA_CRDS = Path(__file__).parent / "fixtures" / "keda"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


@dataclass(frozen=True)
class CelRule:
    """One `x-kubernetes-validations` entry of a CRD."""

    api_version: str
    kind: str
    path: tuple[str, ...]  # property names from the object's root; "*" is every array item
    rule: str
    message: str


def closed(schema: Any) -> Any:
    """The schema with additionalProperties: false wherever properties are listed."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if (
        result.get("type") == "object"
        and isinstance(result.get("properties"), dict)
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def _crd_versions() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(apiVersion, kind, openAPIV3Schema) of every vendored CRD version."""
    for path in sorted(KEDA_CRDS.glob("keda.sh_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            yield f"{group}/{version['name']}", kind, version["schema"]["openAPIV3Schema"]


@functools.cache
def keda_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> validator, from the vendored CRDs."""
    return {
        (api_version, kind): jsonschema.Draft7Validator(closed(schema))
        for api_version, kind, schema in _crd_versions()
    }


def _rules_in(schema: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict]]:
    if not isinstance(schema, dict):
        return
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule
    for name, sub in (schema.get("properties") or {}).items():
        yield from _rules_in(sub, (*path, name))
    if isinstance(schema.get("items"), dict):
        yield from _rules_in(schema["items"], (*path, "*"))


@functools.cache
def cel_rules() -> tuple[CelRule, ...]:
    """Every CEL rule of the vendored CRDs."""
    return tuple(
        CelRule(api_version, kind, path, rule["rule"], rule.get("message", rule["rule"]))
        for api_version, kind, schema in _crd_versions()
        for path, rule in _rules_in(schema, ())
    )


@functools.cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _at(obj: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        yield obj
    elif path[0] == "*":
        for item in obj if isinstance(obj, list) else []:
            yield from _at(item, path[1:])
    elif isinstance(obj, dict) and path[0] in obj:
        yield from _at(obj[path[0]], path[1:])


def cel_errors(obj: dict[str, Any]) -> list[str]:
    """The messages of the CEL rules `obj` breaks (as the API server words them)."""
    errors = []
    for rule in cel_rules():
        if (rule.api_version, rule.kind) != (obj["apiVersion"], obj["kind"]):
            continue
        for value in _at(obj, rule.path):
            if not _program(rule.rule).evaluate({"self": celpy.json_to_cel(value)}):
                where = ".".join(rule.path)
                errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {rule.message}")
    return errors


def keda_errors(obj: dict[str, Any]) -> list[str]:
    """Schema and CEL violations of one KEDA object."""
    validator = keda_validators().get((obj["apiVersion"], obj["kind"]))
    if validator is None:
        return [f"no vendored CRD for {obj['apiVersion']} {obj['kind']}"]
    return [
        f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(obj)
    ] + cel_errors(obj)
