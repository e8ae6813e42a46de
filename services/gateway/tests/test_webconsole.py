"""The web console's files: served at /console/ with a strict CSP that still
lets the page read the events service's origin; nothing else is reachable."""

from __future__ import annotations

import httpx

from relay_gateway.app import create_app
from relay_gateway.config import GatewaySettings
from relay_gateway.webconsole import WEB_DIR


def console_client(events_public_url: str = "") -> httpx.AsyncClient:
    # Static files need no runtime: the app's lifespan is not entered.
    app = create_app(GatewaySettings(dev_mode=True, events_public_url=events_public_url))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_the_console_is_served_with_a_strict_csp() -> None:
    async with console_client("http://127.0.0.1:8081") as client:
        page = await client.get("/console/")
        script = await client.get("/console/sse.js")
        redirect = await client.get("/console")
    assert page.status_code == 200 and "<title>Relay console</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "connect-src 'self' http://127.0.0.1:8081" in csp
    assert "form-action 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["content-security-policy"] == csp
    assert redirect.status_code in (307, 308) and redirect.headers["location"].endswith("/console/")


async def test_same_origin_events_need_no_extra_connect_source() -> None:
    async with console_client() as client:
        csp = (await client.get("/console/")).headers["content-security-policy"]
    assert "connect-src 'self';" in csp


async def test_nothing_outside_the_console_folder_is_served() -> None:
    async with console_client() as client:
        for path in ("/console/../app.py", "/console/%2e%2e/app.py", "/console/nope.js"):
            resp = await client.get(path)
            assert resp.status_code == 404, path


def test_the_sign_in_key_field_is_never_submitted_by_a_form() -> None:
    """An input without a name is never part of a form submission (so never of
    a URL, even with scripts off); `form-action 'none'` forbids submitting too."""
    html = (WEB_DIR / "index.html").read_text()
    tag = html[html.index('<input id="api-key"') :].split(">", 1)[0]
    assert "name=" not in tag and 'type="password"' in tag
