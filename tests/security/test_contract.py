"""Finding 7: the OpenAPI document omitted what the API refuses at runtime.

The accepted `model` names and the cursor's format were refused at runtime
but not described, and a `405` carried an `Allow` header missing a method
(Starlette named only the first route of the path: `GET /v1/runs` and
`POST /v1/runs` are two routes). Now the schema lists the models (an enum
from the model table) and the cursor's pattern, and every 405 lists every
method of its path (relay_core.errors.allowed_methods).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from relay_core.models import ModelCatalog
from relay_devstack.stack import Stack

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@pytest.fixture(scope="module")
def spec(security_stack: Stack) -> dict[str, Any]:
    return dict(httpx.get(f"{security_stack.gateway_url}/openapi.json", timeout=10).json())


def test_the_schema_lists_the_accepted_models(spec: dict[str, Any], security_stack: Stack) -> None:
    names = ModelCatalog.load(None).names()
    for body in ("SubmitRunIn", "ChatStreamIn"):
        prop = spec["components"]["schemas"][body]["properties"]["model"]
        enums = [b["enum"] for b in prop["anyOf"] if "enum" in b]
        assert enums == [names], prop
    key_headers = {"Authorization": f"Bearer {security_stack.api_key}"}
    refused = httpx.post(
        f"{security_stack.gateway_url}/v1/runs",
        json={"message": "hi", "model": "not-in-the-table"},
        headers=key_headers,
    )
    assert refused.status_code == 422
    assert all(name in refused.json()["error"]["message"] for name in names)


def test_the_schema_gives_the_cursor_format(spec: dict[str, Any]) -> None:
    (cursor,) = [p for p in spec["paths"]["/v1/runs"]["get"]["parameters"] if p["name"] == "cursor"]
    patterns = [b["pattern"] for b in cursor["schema"]["anyOf"] if "pattern" in b]
    assert patterns and "base64" in cursor["description"]
    assert re.fullmatch(patterns[0].strip("^$"), "MTIz")  # what state's cursors look like
    listed = spec["components"]["schemas"]["RunList"]["properties"]["next_cursor"]
    assert [b["pattern"] for b in listed["anyOf"] if "pattern" in b] == patterns


def test_every_405_allows_exactly_the_paths_methods(
    spec: dict[str, Any], security_stack: Stack
) -> None:
    wrong = []
    with httpx.Client(base_url=security_stack.gateway_url, timeout=5) as client:
        for template, operations in spec["paths"].items():
            path = re.sub(r"\{[^}]+\}", "x1", template)
            declared = {m.upper() for m in operations}
            for method in ALL_METHODS:
                if method in declared:
                    continue
                resp = client.request(method, path)
                assert resp.status_code == 405, (method, path, resp.status_code)
                allowed = {m.strip() for m in resp.headers["Allow"].split(",")}
                if allowed != declared:
                    wrong.append((method, template, sorted(allowed), sorted(declared)))
    assert not wrong, wrong
