"""`RelayClient`: the synchronous client.

    from relay_client import RelayClient

    with RelayClient("http://127.0.0.1:8080", api_key) as relay:
        run = relay.submit("What is 6*7?")
        for event in relay.stream(run):
            ...
        reply = relay.chat("Hello").until_done().text

Requests are retried on network errors and on 429/502/503/504 (after the
server's `Retry-After`), a submission under one `Idempotency-Key` generated
per call, so a retry never creates a second run. Errors raise
`relay_client.errors.RelayError` subclasses carrying the API's `reason`.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from relay_client import calls, models
from relay_client.calls import Call
from relay_client.config import ClientConfig, new_idempotency_key
from relay_client.errors import RelayError
from relay_client.retry import NETWORK_ERRORS, Backoff, RetryPolicy, retryable
from relay_client.stream import RunStream, StreamTarget

__all__ = ["RelayClient", "RunRef"]

M = TypeVar("M", bound=BaseModel)
RunRef = str | models.RunAccepted | models.Run


def target_of(run: RunRef) -> StreamTarget:
    if isinstance(run, str):
        return StreamTarget(run_id=run)
    return StreamTarget(
        run_id=run.run_id, events_url=run.events_url, conversation_id=run.conversation_id
    )


class RelayClient:
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        event_hooks: dict[str, list[Any]] | None = None,
    ) -> None:
        """`base_url`/`api_key` default to `RELAY_URL`/`RELAY_API_KEY`."""
        self.config = ClientConfig.resolve(base_url, api_key, timeout_s=timeout_s, retry=retry)
        self.http = httpx.Client(
            **self.config.client_kwargs(), transport=transport, event_hooks=event_hooks
        )

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: Call[Any]) -> httpx.Response:
        backoff = Backoff(self.config.retry)
        while True:
            try:
                response = self.http.request(
                    call.method, call.path, json=call.json, params=call.params, headers=call.headers
                )
            except NETWORK_ERRORS:
                if not call.repeatable or backoff.failures + 1 >= self.config.retry.max_attempts:
                    raise
                time.sleep(backoff.failed())
                continue
            if response.status_code < 400:
                return response
            error = RelayError.from_response(response)
            if not retryable(error) or backoff.failures + 1 >= self.config.retry.max_attempts:
                raise error
            time.sleep(backoff.failed(error.retry_after_s))

    def _call(self, call: Call[M]) -> M:
        response = self._send(call)
        assert call.model is not None
        return call.model.model_validate(response.json())

    # runs

    def submit(
        self,
        message: str,
        *,
        conversation_id: str | None = None,
        model: str | None = None,
        max_cost_usd: float | None = None,
        on_conflict: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.RunAccepted:
        """Queue a background run (202); retried safely under one Idempotency-Key."""
        return self._call(
            calls.submit(
                message,
                conversation_id=conversation_id,
                model=model,
                max_cost_usd=max_cost_usd,
                on_conflict=on_conflict,
                idempotency_key=idempotency_key,
            )
        )

    def stream(self, run: RunRef, *, last_event_id: str | None = None) -> RunStream:
        """The run's events from the start (or after `last_event_id`), resumed on any drop."""
        return RunStream(self, target_of(run), last_event_id=last_event_id)

    def chat(
        self,
        message: str,
        *,
        conversation_id: str | None = None,
        model: str | None = None,
        max_cost_usd: float | None = None,
        detach: bool = False,
    ) -> RunStream:
        """An interactive run, streamed. Stopping early cancels it unless `detach`."""
        body = calls.chat_body(
            message, conversation_id=conversation_id, model=model, max_cost_usd=max_cost_usd
        )
        target = StreamTarget(chat_body=body, idempotency_key=new_idempotency_key())
        return RunStream(self, target, cancel_on_close=not detach)

    def get_run(self, run_id: str) -> models.Run:
        return self._call(calls.get_run(run_id))

    def list_runs(
        self, *, status: str | list[str] | None = None, limit: int = 20, cursor: str | None = None
    ) -> models.RunList:
        return self._call(calls.list_runs(status=status, limit=limit, cursor=cursor))

    def cancel(self, run_id: str) -> models.Run:
        return self._call(calls.cancel(run_id))

    def transcript(self, conversation_id: str) -> models.Transcript:
        return self._call(calls.transcript(conversation_id))

    def transcript_at(self, url: str) -> models.Transcript:
        """The transcript at a `transcript_url` (of a run or a `resync` event)."""
        return self._call(calls.transcript_at(url))

    # admin (an admin key)

    def kill_switch(self) -> models.KillSwitch:
        return self._call(calls.kill_switch())

    def set_kill_switch(self, enabled: bool) -> models.KillSwitch:
        return self._call(calls.set_kill_switch(enabled))

    def create_key(
        self, user_id: str, *, role: str = "user", name: str = "", **limits: Any
    ) -> models.CreatedApiKey:
        return self._call(calls.create_key(user_id, role=role, name=name, limits=limits))

    def list_keys(self, user_id: str | None = None) -> models.KeyList:
        return self._call(calls.list_keys(user_id))

    def revoke_key(self, key_id: str) -> None:
        self._send(calls.revoke_key(key_id))

    def overview(self) -> models.Overview:
        return self._call(calls.overview())
