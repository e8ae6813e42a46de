"""What the events endpoints do: open a run's event stream, and readiness.

Checks run in the order a client can act on: the API key first (401), then
the key's rate limit (429: opening a stream is a request like any other,
counted by the gateway's limiter), then the resume id (400: a malformed
`Last-Event-ID` is refused before anything streams), then the owner check
through state (404 for an unknown id and for another user's run alike, so
ids cannot be probed), then the key's cap on open streams (429,
`streamcap`), then the subscription (503 when Redis is down). Only then does
the 200 and the stream start; its place under the cap goes back when it ends.
"""

from __future__ import annotations

import asyncio
import re

from sse_starlette import EventSourceResponse

from relay_core import sse
from relay_core.errors import ApiError, readiness_answer
from relay_core.fanout import HubUnavailable, parse_after_id
from relay_core.ratelimit import check_rate
from relay_core.state_api import Principal, RunOut
from relay_core.state_client import NotFound, StateError, StateUnavailable
from relay_events import firsttoken
from relay_events.runtime import Runtime

_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
# A stream lasts as long as its run: asking again sooner mostly earns another 429.
STREAMS_RETRY_AFTER_S = 5


def _resume_id(last_event_id: str | None) -> str | None:
    try:
        parse_after_id(last_event_id)
    except ValueError:
        raise ApiError(
            400,
            "malformed Last-Event-ID: expected a stream id like '1700000000000-0'",
            type_="invalid_request",
        ) from None
    return last_event_id.strip() if last_event_id else None


async def _owned_run(runtime: Runtime, run_id: str, user_id: str) -> RunOut:
    if _RUN_ID.fullmatch(run_id) is None:
        raise ApiError(404, "run not found")
    try:
        return await runtime.state.get_run(run_id, user_id=user_id)
    except NotFound:
        raise ApiError(404, "run not found") from None
    except StateUnavailable:
        raise ApiError(503, "state service unavailable", reason="state_unavailable") from None
    except StateError as exc:
        if 400 <= exc.status < 500:  # an id state cannot even look up
            raise ApiError(404, "run not found") from None
        raise ApiError(503, "state service error", reason="state_unavailable") from None


async def _take_stream_place(runtime: Runtime, principal: Principal) -> str:
    cap = principal.max_streams or runtime.settings.max_streams_per_key
    stream_id = await runtime.streams.take(key_id=principal.key_id, cap=cap)
    if stream_id is None:
        runtime.metrics.streams_refused += 1
        raise ApiError(
            429,
            f"this API key has {cap} event streams open, its limit; close one first",
            reason="concurrent_streams",
            headers={"Retry-After": str(STREAMS_RETRY_AFTER_S)},
        )
    return stream_id


async def open_run_events(
    *,
    runtime: Runtime,
    authorization: str | None,
    client: str | None,
    run_id: str,
    last_event_id: str | None,
) -> EventSourceResponse:
    principal = await runtime.auth.authenticate(authorization, client)
    limit = principal.rate_limit_per_min or runtime.settings.rate_limit_per_min
    try:
        await check_rate(
            runtime.redis,
            key_id=principal.key_id,
            limit_per_min=limit,
            local=runtime.local_limits,
        )
    except ApiError:
        runtime.metrics.rate_limited += 1
        raise
    after_id = _resume_id(last_event_id)
    run = await _owned_run(runtime, run_id, principal.user_id)
    stream_id = await _take_stream_place(runtime, principal)

    def release() -> None:
        runtime.streams.release(key_id=principal.key_id, stream_id=stream_id)

    try:
        sub = await runtime.hub.subscribe(run_id, after_id=after_id, run=run)
    except HubUnavailable:
        release()
        raise ApiError(503, "event store unavailable", reason="redis_unavailable") from None
    except BaseException:
        release()
        raise

    def on_close() -> None:
        sub.close()
        release()

    return sse.response(
        firsttoken.watch(
            sub, run_id=run_id, traceparent=run.traceparent, resumed=after_id is not None
        ),
        keepalive_s=runtime.settings.keepalive_s,
        send_timeout_s=runtime.settings.send_timeout_s,
        on_close=on_close,
        shutdown_event=runtime.shutdown,
    )


async def readiness(*, runtime: Runtime) -> tuple[bool, dict[str, object]]:
    """(ready, body): `{"status", "checks"}`, or an error body naming what is down."""
    timeout_s = runtime.settings.dependency_timeout_s
    redis_ok, state_ok = await asyncio.gather(
        asyncio.wait_for(runtime.hub.ping(), timeout_s * 2),
        asyncio.wait_for(runtime.state.ready(), timeout_s * 2),
        return_exceptions=True,
    )
    return readiness_answer({"redis": redis_ok is True, "state": state_ok is True})
