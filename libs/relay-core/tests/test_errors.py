"""Every failure path answers DESIGN's JSON error shape, never a trace."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from relay_core.errors import ApiError, install, is_api_reason, readiness_answer


class Body(BaseModel):
    message: str


def make_app() -> FastAPI:
    app = FastAPI()
    install(app)

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, str]:
        return {"message": body.message}

    @app.get("/limited")
    async def limited() -> None:
        raise ApiError(429, "slow down", headers={"Retry-After": "3"}, reason="rate_limit")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app


async def call(method: str, path: str, **kw: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, path, **kw)  # type: ignore[arg-type]


async def test_malformed_json_is_400() -> None:
    resp = await call(
        "POST", "/echo", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_json"


async def test_missing_field_is_422_naming_it() -> None:
    resp = await call("POST", "/echo", json={})
    assert resp.status_code == 422 and "message" in resp.json()["error"]["message"]


async def test_api_error_keeps_status_headers_and_reason() -> None:
    resp = await call("GET", "/limited")
    assert resp.status_code == 429 and resp.headers["retry-after"] == "3"
    assert resp.json() == {
        "error": {"type": "rate_limited", "message": "slow down", "reason": "rate_limit"}
    }


async def test_unknown_route_is_json_404() -> None:
    resp = await call("GET", "/nope")
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found"


async def test_unexpected_error_hides_the_trace() -> None:
    resp = await call("GET", "/boom")
    assert resp.status_code == 500
    assert "secret internals" not in resp.text and "Traceback" not in resp.text
    assert resp.json()["error"]["type"] == "internal"


def test_readiness_names_what_is_down() -> None:
    assert readiness_answer({"redis": True, "state": True}) == (
        True,
        {"status": "ready", "checks": {"redis": "ok", "state": "ok"}},
    )
    ready, body = readiness_answer({"redis": True, "state": False})
    assert not ready
    assert body["error"] == {
        "type": "unavailable",
        "message": "not ready: state down",
        "reason": "state_unavailable",
    }
    assert body["checks"] == {"redis": "ok", "state": "down"}
    _, both = readiness_answer({"redis": False, "state": False})
    error = both["error"]
    assert isinstance(error, dict) and error["reason"] == "dependencies_unavailable"


def test_only_known_reasons_pass_on() -> None:
    assert is_api_reason("conversation_busy")
    assert not is_api_reason("something_new") and not is_api_reason(None)
