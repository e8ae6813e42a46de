"""`AsyncRelayClient`: `RelayClient` for asyncio; the same calls, awaited.

async with AsyncRelayClient(url, key) as relay:
    async for event in relay.chat("Hello"):
        ...
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from relay_client import calls, models
from relay_client.astream import AsyncRunStream
from relay_client.calls import Call
from relay_client.client import RunRef, target_of
from relay_client.config import ClientConfig, new_idempotency_key
from relay_client.errors import RelayError
from relay_client.retry import NETWORK_ERRORS, Backoff, RetryPolicy, retryable
from relay_client.stream import StreamTarget

__all__ = ["AsyncRelayClient"]

M = TypeVar("M", bound=BaseModel)


class AsyncRelayClient:
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(base_url, api_key, timeout_s=timeout_s, retry=retry)
        self.http = httpx.AsyncClient(**self.config.client_kwargs(), transport=transport)

    async def __aenter__(self) -> AsyncRelayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, call: Call[Any]) -> httpx.Response:
        backoff = Backoff(self.config.retry)
        while True:
            try:
                response = await self.http.request(
                    call.method, call.path, json=call.json, params=call.params, headers=call.headers
                )
            except NETWORK_ERRORS:
                if not call.repeatable or backoff.failures + 1 >= self.config.retry.max_attempts:
                    raise
                await asyncio.sleep(backoff.failed())
                continue
            if response.status_code < 400:
                return response
            error = RelayError.from_response(response)
            if not retryable(error) or backoff.failures + 1 >= self.config.retry.max_attempts:
                raise error
            await asyncio.sleep(backoff.failed(error.retry_after_s))

    async def _call(self, call: Call[M]) -> M:
        response = await self._send(call)
        assert call.model is not None
        return call.model.model_validate(response.json())

    async def submit(
        self,
        message: str,
        *,
        conversation_id: str | None = None,
        model: str | None = None,
        max_cost_usd: float | None = None,
        on_conflict: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.RunAccepted:
        return await self._call(
            calls.submit(
                message,
                conversation_id=conversation_id,
                model=model,
                max_cost_usd=max_cost_usd,
                on_conflict=on_conflict,
                idempotency_key=idempotency_key,
            )
        )

    def stream(self, run: RunRef, *, last_event_id: str | None = None) -> AsyncRunStream:
        return AsyncRunStream(self, target_of(run), last_event_id=last_event_id)

    def chat(
        self,
        message: str,
        *,
        conversation_id: str | None = None,
        model: str | None = None,
        max_cost_usd: float | None = None,
        detach: bool = False,
    ) -> AsyncRunStream:
        body = calls.chat_body(
            message, conversation_id=conversation_id, model=model, max_cost_usd=max_cost_usd
        )
        target = StreamTarget(chat_body=body, idempotency_key=new_idempotency_key())
        return AsyncRunStream(self, target, cancel_on_close=not detach)

    async def get_run(self, run_id: str) -> models.Run:
        return await self._call(calls.get_run(run_id))

    async def list_runs(
        self, *, status: str | list[str] | None = None, limit: int = 20, cursor: str | None = None
    ) -> models.RunList:
        return await self._call(calls.list_runs(status=status, limit=limit, cursor=cursor))

    async def cancel(self, run_id: str) -> models.Run:
        return await self._call(calls.cancel(run_id))

    async def transcript(self, conversation_id: str) -> models.Transcript:
        return await self._call(calls.transcript(conversation_id))

    async def transcript_at(self, url: str) -> models.Transcript:
        return await self._call(calls.transcript_at(url))

    async def kill_switch(self) -> models.KillSwitch:
        return await self._call(calls.kill_switch())

    async def set_kill_switch(self, enabled: bool) -> models.KillSwitch:
        return await self._call(calls.set_kill_switch(enabled))

    async def create_key(
        self, user_id: str, *, role: str = "user", name: str = "", **limits: Any
    ) -> models.CreatedApiKey:
        return await self._call(calls.create_key(user_id, role=role, name=name, limits=limits))

    async def list_keys(self, user_id: str | None = None) -> models.KeyList:
        return await self._call(calls.list_keys(user_id))

    async def revoke_key(self, key_id: str) -> None:
        await self._send(calls.revoke_key(key_id))

    async def overview(self) -> models.Overview:
        return await self._call(calls.overview())
