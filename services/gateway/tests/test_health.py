"""The gateway lives without its dependencies: /healthz answers, /readyz names
what is down, and requests that need state answer 503 fast."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay_devstack.procs import free_port


@pytest.fixture
async def orphan(make_gateway: Any) -> AsyncIterator[Any]:
    """A gateway whose state and Redis are both unreachable."""
    dead_state = f"http://127.0.0.1:{free_port()}"
    async with make_gateway(dead_state, redis_url=f"redis://127.0.0.1:{free_port()}/0") as c:
        yield c


async def test_healthz_answers_with_everything_down(orphan: Any) -> None:
    started = time.monotonic()
    resp = await orphan.management.get("/healthz")
    assert time.monotonic() - started < 0.5
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["kill_switch"] is None  # unknown: Redis unreadable
    assert body["interactive_in_flight"] is None and body["interactive_capacity"] is None
    # The public port's requests in flight (a probe on the management port is not one).
    assert body["streams_open"] == 0 and body["requests_in_flight"] == 0


async def test_readyz_names_both_dependencies(orphan: Any) -> None:
    resp = await orphan.management.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["error"]["reason"] == "dependencies_unavailable"
    assert body["checks"] == {"state": "down", "redis": "down"}


async def test_readyz_names_state_when_only_state_is_down(
    make_gateway: Any, gw_redis_url: str
) -> None:
    async with make_gateway(f"http://127.0.0.1:{free_port()}", redis_url=gw_redis_url) as gw:
        resp = await gw.management.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["error"]["reason"] == "state_unavailable"
    assert resp.json()["checks"] == {"state": "down", "redis": "ok"}


async def test_authenticated_request_is_fast_503_when_state_is_down(orphan: Any) -> None:
    started = time.monotonic()
    resp = await orphan.post(
        "/v1/runs", json={"message": "hi"}, headers={"Authorization": "Bearer some-key"}
    )
    assert time.monotonic() - started < 2.5
    assert resp.status_code == 503
    assert resp.json()["error"]["reason"] == "state_unavailable"
    assert "Traceback" not in resp.text


async def test_missing_key_is_401_even_with_state_down(orphan: Any) -> None:
    resp = await orphan.get("/v1/runs/run_1")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_openapi_and_docs_describe_the_public_api(orphan: Any) -> None:
    schema = (await orphan.get("/openapi.json")).json()
    for path in (
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/cancel",
        "/v1/conversations/{conversation_id}/messages",
        "/v1/admin/kill-switch",
        "/v1/admin/keys",
        "/v1/admin/keys/{key_id}",
        "/healthz",
    ):
        assert path in schema["paths"], path
    # the probes and metrics are the management port's, not the public API's
    assert not {"/readyz", "/metrics", "/livez"} & set(schema["paths"])
    submit = schema["paths"]["/v1/runs"]["post"]
    assert {"202", "401", "409", "413", "429", "503"} <= set(submit["responses"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert (await orphan.get("/docs")).status_code == 200


async def test_metrics_exposes_the_scaling_signals(orphan: Any) -> None:
    await orphan.get("/v1/runs/run_abc")  # 401, labelled by template, not raw path
    text = (await orphan.management.get("/metrics")).text
    assert "relay_gateway_requests_in_flight" in text
    assert "relay_gateway_streams_open 0.0" in text
    assert "relay_gateway_kill_switch -1.0" in text
    assert "relay_gateway_interactive_in_flight -1.0" in text
    assert "relay_gateway_interactive_capacity -1.0" in text
    assert 'route="/v1/runs/{run_id}",status="401"' in text
    assert "run_abc" not in text
