"""FastAPI dependencies, as `Annotated` aliases so a route's wiring is one line.

`CurrentPrincipal` authenticates the API key (through state, cached for
`auth_cache_ttl_s`; failures counted against the client's address,
relay_core.auththrottle) and then counts the request against the key's rate
limit, so every authenticated endpoint is rate limited and nothing else is.
`AdminPrincipal` answers 403 to a valid non-admin key: the admin endpoints
are documented in the public OpenAPI schema anyway, so hiding them behind a
404 would only make a misconfigured key harder to diagnose.

Why every dependency is `async def`: FastAPI runs a plain `def` dependency in
its thread pool, a thread hop per dependency per request; these only read
memory, so they run on the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from relay_core.errors import ApiError
from relay_core.ratelimit import check_rate
from relay_core.state_api import Principal
from relay_gateway.runtime import Runtime

bearer = HTTPBearer(
    auto_error=False,
    description="An API key: `Authorization: Bearer <key>`",
)


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:  # only between start-up and the end of the lifespan's set-up
        raise ApiError(503, "gateway is starting", reason="starting")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def current_principal(
    request: Request,
    runtime: RuntimeDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    try:
        client = request.client.host if request.client else None
        principal = await runtime.auth.authenticate(request.headers.get("authorization"), client)
    except ApiError as exc:
        if exc.status == 503 and exc.reason is None:
            exc.reason = "state_unavailable"
        raise
    limit = principal.rate_limit_per_min or runtime.settings.rate_limit_per_min
    try:
        await check_rate(
            runtime.redis,
            key_id=principal.key_id,
            limit_per_min=limit,
            local=runtime.local_limits,
            calls=runtime.calls,
        )
    except ApiError:
        runtime.metrics.rate_limited.inc()
        raise
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    if principal.role != "admin":
        raise ApiError(403, "this endpoint needs an API key with the admin role")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
