"""The web console: static files (HTML, CSS, ES modules) served at `/console/`.

No build step: the files in `web/` are what the browser runs, shipped in the
gateway's wheel. Every response carries a Content-Security-Policy that
allows only this origin's scripts and styles (no inline code), and network
calls to this origin and the events service's (`RELAY_EVENTS_PUBLIC_URL`,
another origin in dev; the events service allows the console's origin with
`RELAY_CORS_ORIGINS`). `form-action 'none'`: no form ever submits, so a key
typed into the sign-in form can never end up in a URL even with scripts off.
`Referrer-Policy: no-referrer` and `Cache-Control: no-store` keep the pages
out of other sites' logs and the disk cache.

Why the console reads the stream from the events service itself, not
through a gateway proxy: behind one ingress host (production) the events
path is same-origin and needs nothing; a proxy would double every stream's
hops and put subscriber load on the gateway, which does not scale on it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WEB_DIR = Path(__file__).parent / "web"
PATH = "/console"


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def security_headers(events_public_url: str) -> dict[str, str]:
    connect = " ".join(filter(None, ["'self'", origin_of(events_public_url)]))
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


class WithHeaders:
    """An ASGI app whose every response gets `headers`."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount(app: FastAPI, *, events_public_url: str) -> None:
    static = StaticFiles(directory=WEB_DIR, html=True)
    app.mount(PATH, WithHeaders(static, security_headers(events_public_url)), name="console")
