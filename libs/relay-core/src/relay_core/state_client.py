"""Client of state's internal API, used by gateway, runner and events.

Failures map to three exceptions the callers act on: `NotFound` (404: unknown
or another user's id), `Conflict` (409: a stale attempt, a terminal run, a
reused idempotency key) and `StateUnavailable` (state or its database is down
or slow: callers answer 503 or back off). Nothing else escapes. A
`StateUnavailable` without an answer from state says whether the request may
have reached it (`sent`: it was written and no answer came back, so state may
still carry it out), which the gateway needs to know about a run creation.

Why aiohttp: every run is several calls to state from the runner (claim,
checkpoints, finish) and one from the gateway, so the client's CPU per call
is on every run's path. Measured on 200 concurrent calls (a burst of chats):
httpx with its default transport, limits right (200 connections, 200 kept
alive), ~2,500 us of client CPU per call (httpcore's pool examines every
connection it holds each time a request is queued or a response is closed,
a socket check per idle connection); httpx with a hand-written keep-alive
transport (`relay_core.statehttp`, which this replaces) ~270 us, of which
most is httpx's own request and response objects; aiohttp ~200 us, with its
C HTTP parser, a pool that reuses the most recently used connection first,
and no hand-written transport to keep. The session is created on the first
call (it belongs to the running event loop) and closed by `aclose`.

Pool: at most `max_connections` connections, kept alive for
`KEEPALIVE_EXPIRY_S` (below uvicorn's 5 s, so a request is not written into a
connection the server is closing). Timeouts: a request waits at most
`timeout_s` for a pooled connection, `min(timeout_s, 1)` to connect and
`timeout_s` for each read of the answer. Responses are validated straight
from their bytes (`model_validate_json`).

Creations, claims, checkpoints and finishes that wait at the same moment go
to state together, one batch request per kind (`relay_core.coalesce`;
state carries each item out as its single call); each caller still gets its
own answer or exception. A state that answers 404/405 to a batch (older than
batches) gets single calls from then on.

With tracing on, the caller's trace context is sent along (`traceparent`:
a header, or a field of the item of a batch), so state's server span is a
child of the span that made the call. A single call made inside a span is
also a client span (`state GET /runs/{id}`); a batched call (create, claim,
checkpoint, finish: several per run, the hot path) is not: state's span of
the item would time the same work again, at ~60 µs of CPU per span
(created, ended, exported: docs/observability.md, "Cost"). A batch request carries no context of
its own (its items do; state does not trace the envelope). A call outside any
span (a readiness probe's) starts no trace of its own.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel

from relay_core import state_api as api
from relay_core import tracing
from relay_core.coalesce import Coalescer

M = TypeVar("M", bound=BaseModel)

# A path segment that is an id (run_..., conv_..., key_..., a uuid): `{id}` in span names.
_ID_SEGMENT = re.compile(r"/(?:[a-z]+_[0-9a-zA-Z]{8,}|[0-9a-f-]{32,36})(?=/|$)")
# Below uvicorn's `timeout_keep_alive` (5 s): reuse only what the server keeps.
KEEPALIVE_EXPIRY_S = 4.0
Params = dict[str, Any] | None


class StateError(Exception):
    def __init__(self, message: str, *, status: int = 0, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.body = body or {}


class NotFound(StateError):
    pass


class Conflict(StateError):
    pass


class StateUnavailable(StateError):
    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        body: dict[str, Any] | None = None,
        sent: bool = False,
    ):
        super().__init__(message, status=status, body=body)
        # No answer came, but the request was written: state may still carry it out.
        self.sent = sent


@dataclass(frozen=True, slots=True)
class Answer:
    """State's answer: its status and body."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def _query(params: Params) -> list[tuple[str, str]] | None:
    """Query parameters as aiohttp takes them (a list value repeats its name)."""
    if not params:
        return None
    out: list[tuple[str, str]] = []
    for name, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            out.append((name, str(item)))
    return out


class _NoBatches(Exception):
    """State answered 404/405 to a batch: it predates them."""


def _error(status: int, body: Any, text: str) -> StateError:
    """The exception of an error answer (`body`: its JSON, the error shape)."""
    body_json: dict[str, Any] = body if isinstance(body, dict) else {}
    error = body_json.get("error")
    message = str(error.get("message", text) if isinstance(error, dict) else text)
    if status == 404:
        return NotFound(message, status=404, body=body_json)
    if status == 409:
        return Conflict(message, status=409, body=body_json)
    if status in (502, 503, 504):
        return StateUnavailable(message, status=status, body=body_json)
    return StateError(message, status=status, body=body_json)


def _client_span(method: str, path: str) -> contextlib.AbstractContextManager[tracing.Span | None]:
    """A client span `state POST /runs/{id}/claim` when traced work makes the call
    (off, or a call outside any span, such as a probe's: none)."""
    if not tracing.in_span():
        return contextlib.nullcontext()
    template = _ID_SEGMENT.sub("/{id}", path)
    attributes = {"http.request.method": method, "url.template": template}
    return tracing.span(
        f"state {method} {template}", kind=tracing.SpanKind.CLIENT, attributes=attributes
    )


class StateClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 2.0,
        max_connections: int = 100,
        keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S,
        batching: bool = True,
    ) -> None:
        """`batching`: creations, claims, checkpoints and finishes waiting at the
        same moment go to state together (`relay_core.coalesce`)."""
        self._base = base_url.rstrip("/") + api.INTERNAL_PREFIX
        self._headers = {api.INTERNAL_TOKEN_HEADER: token, "Content-Type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_s, sock_connect=min(timeout_s, 1.0), sock_read=timeout_s
        )
        self._max_connections = max_connections
        self._keepalive_s = keepalive_expiry_s
        self._session: aiohttp.ClientSession | None = None
        self._batching = batching
        self._batches: dict[str, Coalescer[dict[str, Any], tuple[int, Any]]] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=self._keepalive_s
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, raise_for_status=False
            )
        return self._session

    async def aclose(self) -> None:
        for batches in self._batches.values():
            await batches.aclose()
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Params = None,
    ) -> Answer:
        with _client_span(method, path) as span:
            resp = await self._exchange(method, path, json=json, params=params)
            if span is not None:
                span.set_attribute("http.response.status_code", resp.status_code)
            return resp

    async def _send(
        self, method: str, path: str, body: bytes | None, params: Params, *, traced: bool = True
    ) -> Answer:
        headers = self._headers
        if traced and tracing.ENABLED:
            headers = dict(headers)
            tracing.inject(headers)
        try:
            async with self._http().request(
                method, self._base + path, data=body, params=_query(params), headers=headers
            ) as resp:
                return Answer(resp.status, await resp.read())
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise StateUnavailable(f"state unreachable: {type(exc).__name__}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise StateUnavailable(f"state unreachable: {type(exc).__name__}", sent=True) from exc

    async def _exchange(self, method: str, path: str, *, json: Any, params: Params) -> Answer:
        body = None if json is None else jsonlib.dumps(json).encode()
        resp = await self._send(method, path, body, params)
        if resp.status_code < 400:
            return resp
        try:
            body_json = resp.json()
        except ValueError:
            body_json = {}
        raise _error(resp.status_code, body_json, resp.content[:200].decode(errors="replace"))

    # batches

    def _coalescer(self, batch_path: str) -> Coalescer[dict[str, Any], tuple[int, Any]]:
        batches = self._batches.get(batch_path)
        if batches is None:

            async def send(
                items: list[dict[str, Any]],
            ) -> list[tuple[int, Any] | BaseException]:
                return [*await self._send_batch(batch_path, items)]

            batches = self._batches[batch_path] = Coalescer(send)
        return batches

    async def _send_batch(
        self, batch_path: str, items: list[dict[str, Any]]
    ) -> list[tuple[int, Any]]:
        body = jsonlib.dumps({"items": items}).encode()
        resp = await self._send("POST", batch_path, body, None, traced=False)
        if resp.status_code in (404, 405):
            raise _NoBatches(batch_path)
        if resp.status_code >= 400:
            try:
                body_json = resp.json()
            except ValueError:
                body_json = {}
            raise _error(resp.status_code, body_json, resp.content[:200].decode(errors="replace"))
        return [(a["status"], a["body"]) for a in resp.json()["answers"]]

    async def _batched(
        self, batch_path: str, path: str, body: dict[str, Any], **item: str
    ) -> tuple[int, Any]:
        """The single call `POST path` with `body`, sent with the others of its kind
        waiting now (`batch_path`); its (status, answer), or its error raised."""
        if not self._batching:
            resp = await self._call("POST", path, json=body)
            return resp.status_code, resp.json()
        call = {**item, "traceparent": tracing.traceparent(), "body": body}
        try:
            status, answer = await self._coalescer(batch_path).call(call)
        except _NoBatches:  # a state that predates batches: single calls from now on
            self._batching = False
            resp = await self._exchange("POST", path, json=body, params=None)
            status, answer = resp.status_code, resp.json()
        if status >= 400:
            raise _error(status, answer, str(answer)[:200])
        return status, answer

    async def _model(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        resp = await self._call(method, path, **kw)
        return model.model_validate_json(resp.content)

    # health

    async def ready(self) -> bool:
        try:
            await self._call("GET", "/ready")
        except StateError:
            return False
        return True

    # API keys

    async def verify_key(self, key: str) -> api.Principal:
        return await self._model(
            api.Principal, "POST", "/keys/verify", json=api.VerifyKeyIn(key=key).model_dump()
        )

    async def create_key(self, req: api.CreateKeyIn) -> api.CreatedKey:
        return await self._model(api.CreatedKey, "POST", "/keys", json=req.model_dump())

    async def list_keys(self, user_id: str | None = None) -> list[api.KeyOut]:
        resp = await self._call("GET", "/keys", params={"user_id": user_id} if user_id else None)
        return [api.KeyOut.model_validate(k) for k in resp.json()["keys"]]

    async def update_key(self, key_id: str, req: api.UpdateKeyIn) -> api.KeyOut:
        """Set the limits `req` carries (only the fields set on it)."""
        body = req.model_dump(exclude_unset=True)
        return await self._model(api.KeyOut, "PATCH", f"/keys/{key_id}", json=body)

    async def revoke_key(self, key_id: str) -> None:
        await self._call("DELETE", f"/keys/{key_id}")

    # runs

    async def create_run(self, req: api.CreateRunIn) -> tuple[api.RunOut, bool]:
        """The run, and whether it was created now (False: an idempotent replay)."""
        status, answer = await self._batched("/batch/runs", "/runs", req.model_dump())
        return api.RunOut.model_validate(answer), status == 201

    async def find_replay(self, req: api.CreateRunIn) -> api.RunOut | None:
        """The run a retry of `req` under its `idempotency_key` is answered with
        by `create_run`, without creating one: None when the key names no run of
        `req.user_id`; `Conflict` when it names a run created by a different
        request. (A state that predates the lookup answers 405: `StateError`.)"""
        try:
            return await self._model(api.RunOut, "POST", "/runs/replay", json=req.model_dump())
        except NotFound:
            return None

    async def get_run(self, run_id: str, *, user_id: str | None = None) -> api.RunOut:
        params = {"user_id": user_id} if user_id else None
        return await self._model(api.RunOut, "GET", f"/runs/{run_id}", params=params)

    async def run_statuses(self, run_ids: list[str]) -> dict[str, str]:
        """Status by run id, for at most 1000 ids; unknown ids are left out."""
        if not run_ids:
            return {}
        body = api.RunStatusesIn(run_ids=run_ids).model_dump()
        out = await self._model(api.RunStatusesOut, "POST", "/runs/statuses", json=body)
        return out.statuses

    async def list_runs(
        self,
        *,
        user_id: str,
        limit: int = 20,
        cursor: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> api.RunPage:
        """The user's runs, newest first; only those in `statuses` when given."""
        params: dict[str, Any] = {"user_id": user_id, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        if statuses:
            params["status"] = statuses
        return await self._model(api.RunPage, "GET", "/runs", params=params)

    async def cancel_run(self, run_id: str, *, user_id: str) -> api.RunOut:
        return await self._model(
            api.RunOut, "POST", f"/runs/{run_id}/cancel", json={"user_id": user_id}
        )

    async def claim_run(
        self, run_id: str, *, consumer: str, lease_ttl_s: float | None = None
    ) -> api.ClaimOut:
        body = api.ClaimIn(consumer=consumer, lease_ttl_s=lease_ttl_s).model_dump(exclude_none=True)
        path = f"/runs/{run_id}/claim"
        _, answer = await self._batched("/batch/claims", path, body, run_id=run_id)
        return api.ClaimOut.model_validate(answer)

    async def checkpoint(self, run_id: str, cp: api.CheckpointIn) -> api.CheckpointOut:
        """The stored checkpoint; `cancel_requested` tells the runner to stop."""
        path = f"/runs/{run_id}/checkpoints"
        _, answer = await self._batched("/batch/checkpoints", path, cp.model_dump(), run_id=run_id)
        return api.CheckpointOut.model_validate(answer)

    async def finish_run(self, run_id: str, fin: api.FinishIn) -> api.RunOut:
        path = f"/runs/{run_id}/finish"
        _, answer = await self._batched("/batch/finishes", path, fin.model_dump(), run_id=run_id)
        return api.RunOut.model_validate(answer)

    async def daily_spend(self, *, user_id: str, day: str) -> api.DailySpendOut:
        """What the cost ledger holds for the user on that UTC day ("YYYY-MM-DD")."""
        params = {"user_id": user_id, "day": day}
        return await self._model(api.DailySpendOut, "GET", "/spend/daily", params=params)

    async def daily_spend_total(self, *, day: str) -> api.DailyTotalOut:
        """What every user spent on that UTC day ("YYYY-MM-DD"), by the same rules."""
        return await self._model(
            api.DailyTotalOut, "GET", "/spend/daily/total", params={"day": day}
        )

    # conversations and documents

    async def messages(self, conversation_id: str, *, user_id: str) -> api.MessagesOut:
        return await self._model(
            api.MessagesOut,
            "GET",
            f"/conversations/{conversation_id}/messages",
            params={"user_id": user_id},
        )

    async def add_document(self, doc: api.DocumentIn) -> api.DocumentOut:
        return await self._model(api.DocumentOut, "POST", "/documents", json=doc.model_dump())

    async def search_documents(self, *, user_id: str, query: str, limit: int = 5) -> api.SearchOut:
        params = {"user_id": user_id, "q": query, "limit": limit}
        return await self._model(api.SearchOut, "GET", "/documents/search", params=params)
