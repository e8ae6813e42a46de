"""Errors in one JSON shape, `{"error": {"type", "message", "reason"?}}`, for every service.

`install(app)` makes every failure path answer that shape: our `ApiError`,
FastAPI's validation errors (422), Starlette's HTTP errors (404/405), bodies
that are not JSON (400), and anything unexpected (500 with no trace in the
body; the trace goes to the log).

A 405's `Allow` header lists every method of the path: Starlette names only
those of the first route whose path matched (`/v1/runs` answered `Allow:
POST` although GET works there too), so `allowed_methods` collects them
from every route of the app (`iter_route_contexts`, what FastAPI's own
OpenAPI generator walks, flattening included routers).

`reason` says what a client can act on (wait and retry, wait for the
conversation's run...). Its values are one typed list, `ApiReason`: `ApiError`
and `error_body` take it, so mypy checks every reason a service gives, and
tests/docs/test_design_doc.py checks that docs/design.md names each one.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Mapping
from typing import Any, Literal, TypeGuard, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

log = logging.getLogger(__name__)

_STATUS_TYPES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


ApiReason = Literal[
    "starting",  # 503: the service has not finished starting
    "state_unavailable",  # 503: the state service is down or slow
    "state_error",  # 503: state refused in a way it should not (a bug, logged)
    "redis_unavailable",  # 503
    "dependencies_unavailable",  # 503 from /readyz: more than one dependency down
    "kill_switch",  # 503: new runs are paused
    "rate_limit",  # 429: the API key's requests per minute
    "auth_failures",  # 429: too many failed authentications from the client's address
    "concurrent_streams",  # 429: the API key's event streams open at once
    "concurrent_runs",  # 429: the user's runs in flight
    "interactive_capacity",  # 429: no interactive runner slot within the wait
    "conversation_busy",  # 409: the conversation has a run queued or running
    "run_id_taken",  # 409 (state's internal API): the caller's run id exists
]
API_REASONS: frozenset[str] = frozenset(get_args(ApiReason))


def is_api_reason(value: object) -> TypeGuard[ApiReason]:
    """Whether `value` is a known reason (one that another service sent)."""
    return value in API_REASONS


class ApiError(Exception):
    """An error a client is meant to see, with its status and type."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str | None = None,
        reason: ApiReason | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _STATUS_TYPES.get(status, "error")
        self.reason: ApiReason | None = reason
        self.headers = headers


def error_body(type_: str, message: str, reason: ApiReason | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"type": type_, "message": message}
    if reason is not None:
        err["reason"] = reason
    return {"error": err}


_UNAVAILABLE: dict[str, ApiReason] = {"redis": "redis_unavailable", "state": "state_unavailable"}


def readiness_answer(checks: Mapping[str, bool]) -> tuple[bool, dict[str, object]]:
    """A `/readyz` answer from named dependency checks (`redis`, `state`): (ready,
    body). Ready: `{"status": "ready", "checks"}`; else the error shape, reason
    `<name>_unavailable` (`dependencies_unavailable` when several are down),
    plus `checks`."""
    named = {name: "ok" if ok else "down" for name, ok in checks.items()}
    down = [name for name, ok in checks.items() if not ok]
    if not down:
        return True, {"status": "ready", "checks": named}
    reason = _UNAVAILABLE.get(down[0]) if len(down) == 1 else "dependencies_unavailable"
    body = error_body("unavailable", f"not ready: {', '.join(down)} down", reason)
    body["checks"] = named
    return False, body


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.type, exc.message, exc.reason), status_code=exc.status, headers=exc.headers
    )


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            return 400, "invalid_json", "request body is not valid JSON"
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return 422, "invalid_request", "; ".join(parts) or "invalid request"


_METHOD_TABLES: weakref.WeakKeyDictionary[Any, list[tuple[re.Pattern[str], frozenset[str]]]] = (
    weakref.WeakKeyDictionary()
)


def _method_table(app: Any) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    table = _METHOD_TABLES.get(app)
    if table is None:
        from fastapi import routing

        iter_contexts = getattr(routing, "iter_route_contexts", None)
        found: list[tuple[str | None, Any]] = (
            [(ctx.path, ctx.methods) for ctx in iter_contexts(app.routes)]
            if iter_contexts is not None  # FastAPI >= 0.16x includes routers lazily
            else [(getattr(r, "path", None), getattr(r, "methods", None)) for r in app.routes]
        )
        table = [
            (compile_path(path)[0], frozenset(methods))
            for path, methods in found
            if path and methods
        ]
        _METHOD_TABLES[app] = table
    return table


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route of `app` answers on `path`, sorted."""
    methods: set[str] = set()
    for regex, route_methods in _method_table(app):
        if regex.match(path):
            methods |= route_methods
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error DESIGN's shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, type_, message = _validation_message(exc)
        return JSONResponse(error_body(type_, message), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _STATUS_TYPES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else type_
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = allowed_methods(request.app, request.url.path)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        return JSONResponse(
            error_body(type_, message), status_code=exc.status_code, headers=headers or None
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal", "internal error; it has been logged"), status_code=500
        )
