"""FastAPI dependencies as `Annotated` aliases, so a route's wiring is one line."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from relay_core.errors import ApiError
from relay_events.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:  # only before the lifespan has set it up, or after shutdown
        raise ApiError(503, "events service is starting", reason="starting")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
