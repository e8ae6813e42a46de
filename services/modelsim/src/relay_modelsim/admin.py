"""Admin and health endpoints: stats, reset, faults, liveness.

They are unauthenticated: modelsim is a dev and test tool that binds
127.0.0.1 by default and runs cluster-internal otherwise. Their errors use the
Relay shape `{"error": {"type", "message"}}`, since they belong to no provider.
"""

from __future__ import annotations

import json
import logging

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from relay_modelsim.directives import describe_errors
from relay_modelsim.engine import sim_state
from relay_modelsim.faults import FaultConfig

__all__ = ["get_faults", "healthz", "put_faults", "reset", "stats"]

logger = logging.getLogger(__name__)


def bad_request(message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"type": "invalid_request_error", "message": message}}, status_code=400
    )


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def stats(request: Request) -> JSONResponse:
    """All counters, or one tag's with `?tag=`."""
    counters = sim_state(request).stats
    tag = request.query_params.get("tag")
    return JSONResponse(counters.snapshot() if tag is None else counters.tag_snapshot(tag))


async def reset(request: Request) -> JSONResponse:
    """Zero the stats and clear every fault (global and `fail_times` counters)."""
    state = sim_state(request)
    state.stats.reset()
    state.faults.reset()
    logger.info("stats and faults reset")
    return JSONResponse({"status": "ok"})


async def get_faults(request: Request) -> JSONResponse:
    return JSONResponse(sim_state(request).faults.config.model_dump(mode="json"))


async def put_faults(request: Request) -> JSONResponse:
    """Replace the global fault; fields left out take their "no fault" defaults."""
    try:
        raw = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return bad_request(f"request body is not valid JSON: {exc}")
    if not isinstance(raw, dict):
        return bad_request("request body must be a JSON object")
    try:
        config = FaultConfig.model_validate(raw)
    except ValidationError as exc:
        return bad_request(describe_errors(exc))
    sim_state(request).faults.set(config)
    logger.info("faults set", extra={"faults": config.model_dump(mode="json")})
    return JSONResponse(config.model_dump(mode="json"))
