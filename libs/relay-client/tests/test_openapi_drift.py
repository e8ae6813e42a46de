"""The SDK's models against the gateway's OpenAPI document: a drift fails here.

The SDK is written by hand (it must install without any Relay package), so
this test is what keeps it true: for every response body it models, the
same field names; a field the API may leave out is optional in the SDK; the
same allowed values for enumerations; and for the SSE events (described in
the OpenAPI document of `POST /v1/chat/stream`), the same event types with
the same payload fields.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from relay_client.events import SERVER_EVENTS, ErrorEvent
from relay_client.models import OPENAPI_SCHEMAS
from relay_gateway.app import create_app
from relay_gateway.config import GatewaySettings


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return create_app(GatewaySettings(dev_mode=True)).openapi()


def required_by_sdk(model: type[BaseModel]) -> set[str]:
    return {name for name, field in model.model_fields.items() if field.is_required()}


def enum_of(prop: dict[str, Any]) -> set[Any] | None:
    if "enum" in prop:
        return set(prop["enum"])
    for branch in prop.get("anyOf", []):
        if "enum" in branch:
            return set(branch["enum"])
    return None


def sdk_enum(model: type[BaseModel], name: str) -> set[Any] | None:
    schema = model.model_json_schema()["properties"].get(name, {})
    return enum_of(schema)


@pytest.mark.parametrize("component", sorted(OPENAPI_SCHEMAS))
def test_response_models_match_the_openapi_document(
    openapi: dict[str, Any], component: str
) -> None:
    model = OPENAPI_SCHEMAS[component]
    schemas = openapi["components"]["schemas"]
    assert component in schemas, f"the API no longer has {component}"
    schema = schemas[component]
    api_fields = set(schema.get("properties", {}))
    assert set(model.model_fields) == api_fields, f"{model.__name__} drifted from {component}"
    may_be_missing = required_by_sdk(model) - set(schema.get("required", []))
    assert not may_be_missing, f"{model.__name__} requires {may_be_missing}; the API may omit them"
    for name, prop in schema["properties"].items():
        api_enum = enum_of(prop)
        if api_enum is not None:
            assert sdk_enum(model, name) == api_enum, f"{model.__name__}.{name}"


def sse_payloads(openapi: dict[str, Any]) -> dict[str, dict[str, Any]]:
    response = openapi["paths"]["/v1/chat/stream"]["post"]["responses"]["200"]
    branches = response["content"]["text/event-stream"]["schema"]["oneOf"]
    return {
        b["properties"]["event"]["const"]: b["properties"]["data"]["contentSchema"]
        for b in branches
    }


def test_event_types_match_the_openapi_document(openapi: dict[str, Any]) -> None:
    assert set(sse_payloads(openapi)) == set(SERVER_EVENTS)


@pytest.mark.parametrize("event", sorted(SERVER_EVENTS))
def test_event_payloads_match_the_openapi_document(openapi: dict[str, Any], event: str) -> None:
    payload = sse_payloads(openapi)[event]
    model = SERVER_EVENTS[event]
    fields = set(model.model_fields) - {"type", "id"}
    required = required_by_sdk(model) - {"type", "id"}
    if model is ErrorEvent:  # the payload's `type` is `error_type` (`type` names the event)
        fields = (fields - {"error_type"}) | {"type"}
    assert fields == set(payload["properties"]), f"{event} payload drifted"
    assert required <= set(payload["required"]), f"{event}: the SDK requires more than is sent"
