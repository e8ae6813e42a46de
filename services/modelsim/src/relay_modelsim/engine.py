"""The request pipeline both provider APIs share.

auth -> parse -> directive -> stats -> faults -> plan -> stream or whole reply.

A provider module supplies a `Dialect`: how it reads the key, parses its wire
request into a `Transcript`, shapes errors, and encodes a `Reply`. Everything
else (timing, faults, stats) happens here once, so both APIs behave alike.

Decisions:

- Only requests that pass auth and validation are counted in the stats; a
  400 or 401 is a client bug, not traffic.
- A global fault is checked before a directive's `fail`, and the fault latency
  is served before either, like a slow provider that then errors.
- A non-streaming reply takes as long as the stream would have (TTFT plus the
  token delays), so latency budgets behave the same with and without streaming.
- `fail.after_tokens` counts output tokens of any kind: words, or tool-call
  fragments when the reply is a tool call.
- A non-streaming request whose directive fails after N tokens waits for those
  N tokens and then answers with the error status: a whole-body API has no way
  to fail half-way.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay_modelsim.config import Settings
from relay_modelsim.directives import Directive, DirectiveError, FailSpec, fingerprint
from relay_modelsim.faults import Faults
from relay_modelsim.replies import Reply, Transcript, directive_of, plan_reply
from relay_modelsim.stats import Stats
from relay_modelsim.streaming import Chunk, EventStreamResponse, Pacing, paced

__all__ = [
    "Dialect",
    "RequestError",
    "SimState",
    "bearer_token",
    "fail_message",
    "handle",
    "read_json",
    "sim_state",
]


SHUTTING_DOWN = FailSpec(status=529, type="overloaded_error", message="modelsim is shutting down")


class RequestError(ValueError):
    """The request body is not a valid request for this API (-> 400)."""


@dataclass
class SimState:
    """Per-app state: settings, counters and faults."""

    settings: Settings
    stats: Stats = field(default_factory=Stats)
    faults: Faults = field(default_factory=Faults)


class Dialect(Protocol):
    def api_key(self, request: Request) -> str | None: ...

    def error(self, status: int, type_: str, message: str) -> JSONResponse: ...

    def parse(self, body: dict[str, Any]) -> Transcript: ...

    def render(self, transcript: Transcript, reply: Reply) -> dict[str, Any]: ...

    def chunks(self, transcript: Transcript, reply: Reply) -> list[Chunk]: ...

    def stream_error(self, fail: FailSpec) -> bytes: ...


async def handle(request: Request, *, dialect: Dialect, state: SimState) -> Response:
    """Serve one completion request in the given provider dialect."""
    denied = check_key(dialect.api_key(request), state.settings)
    if denied:
        return dialect.error(401, "authentication_error", denied)
    try:
        transcript = dialect.parse(await read_json(request))
        directive = directive_of(transcript)
    except (RequestError, DirectiveError) as exc:
        return dialect.error(400, "invalid_request_error", str(exc))
    tracker = state.stats.track(model=transcript.model, tag=directive.tag)
    tracker.request()
    latency = state.faults.latency_s(transcript.model)
    if latency > 0:
        await asyncio.sleep(latency)
    fail = pick_failure(state.faults, transcript.model, directive)
    if fail is not None and fail.after_tokens == 0:
        tracker.error_injected()
        return dialect.error(fail.status, fail.type, fail_message(fail))
    reply = plan_reply(
        transcript=transcript, directive=directive, default_tokens=state.settings.tokens
    )
    pacing = pacing_for(directive, state.settings)
    if transcript.stream:
        chunks = dialect.chunks(transcript, reply)
        err = dialect.stream_error(fail) if fail is not None else b""
        body = paced(chunks, pacing=pacing, fail=fail, error_data=err, tracker=tracker)
        farewell = dialect.stream_error(SHUTTING_DOWN)
        return EventStreamResponse(body, tracker=tracker, farewell=farewell)
    tokens = reply.output_tokens if fail is None else min(fail.after_tokens, reply.output_tokens)
    await asyncio.sleep(pacing.ttft_s + max(tokens - 1, 0) * pacing.token_delay_s)
    tracker.tokens(tokens)
    if fail is not None:
        tracker.error_injected()
        return dialect.error(fail.status, fail.type, fail_message(fail))
    return JSONResponse(dialect.render(transcript, reply))


def check_key(key: str | None, settings: Settings) -> str | None:
    """None when the key is acceptable, else the reason it is not."""
    if not key:
        return "missing API key"
    expected = settings.api_key
    if expected is not None and not hmac.compare_digest(
        key.encode(), expected.get_secret_value().encode()
    ):
        return "invalid API key"
    return None


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def sim_state(request: Request) -> SimState:
    """The `SimState` that `create_app` stored on the app."""
    state: SimState = request.app.state.sim
    return state


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    return body


def pick_failure(faults: Faults, model: str, directive: Directive) -> FailSpec | None:
    """The error this request gets: the global fault first, then the directive's."""
    if faults.draw_error(model):
        cfg = faults.config
        return FailSpec(status=cfg.status, type=cfg.type, message=cfg.message)
    fail = directive.fail
    if fail is None or not faults.take_directive_failure(
        fingerprint(directive), directive.fail_times
    ):
        return None
    return fail


def fail_message(fail: FailSpec) -> str:
    return fail.message or f"simulated {fail.type} (HTTP {fail.status})"


def pacing_for(directive: Directive, settings: Settings) -> Pacing:
    ttft = directive.ttft_ms if directive.ttft_ms is not None else settings.ttft_ms
    delay = (
        directive.token_delay_ms
        if directive.token_delay_ms is not None
        else settings.token_delay_ms
    )
    return Pacing(ttft_s=ttft / 1000.0, token_delay_s=delay / 1000.0)
