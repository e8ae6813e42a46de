"""CORS: only the origins in `RELAY_CORS_ORIGINS` may read streams from a page
(the web console in dev, served by the gateway on another port)."""

from __future__ import annotations

import httpx
import pytest

from relay_events.app import create_app
from relay_events.config import EventsSettings

CONSOLE = "http://127.0.0.1:8080"
PREFLIGHT = {
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization,last-event-id",
}


async def preflight(settings: EventsSettings, origin: str) -> httpx.Response:
    # The preflight is answered by the middleware, before any route: no lifespan needed.
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://events") as client:
        return await client.options(
            "/v1/runs/run_x/events", headers={"Origin": origin, **PREFLIGHT}
        )


def test_origins_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_CORS_ORIGINS", f" {CONSOLE}/, http://localhost:8080 ")
    settings = EventsSettings(dev_mode=True)
    assert settings.cors_origins == [CONSOLE, "http://localhost:8080"]


async def test_the_console_origin_may_send_its_key_and_last_event_id() -> None:
    resp = await preflight(EventsSettings(dev_mode=True, cors_origins=[CONSOLE]), CONSOLE)
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == CONSOLE
    allowed = resp.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "last-event-id" in allowed
    assert "access-control-allow-credentials" not in resp.headers


async def test_another_origin_is_refused() -> None:
    resp = await preflight(
        EventsSettings(dev_mode=True, cors_origins=[CONSOLE]), "http://evil.example"
    )
    assert resp.status_code == 400
    assert "access-control-allow-origin" not in resp.headers


async def test_no_cors_unless_configured() -> None:
    resp = await preflight(EventsSettings(dev_mode=True), CONSOLE)
    assert "access-control-allow-origin" not in resp.headers
