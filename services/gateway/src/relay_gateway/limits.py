"""Request body limits, enforced before anything parses the body.

Why a buffering ASGI middleware: a body over the limit must be refused with
413 whether or not the client announced its size. A `Content-Length` over the
limit is refused without reading a byte; otherwise the body is read into
memory up to the limit (it is small: 256 KiB by default) and refused as soon
as it grows past it, so a chunked upload of gigabytes costs the gateway at most
the limit. The buffered body is then replayed to the app as one message, and
later `receive()` calls go to the server again, so a streaming endpoint still
sees the client's `http.disconnect`.

Every body this gateway accepts is JSON: a non-empty body of another
`Content-Type` is answered 415 here, with a message that says what to send,
instead of a confusing 422 from validation.
"""

from __future__ import annotations

from email.message import Message as EmailMessage

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay_core.errors import ApiError, error_response

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    msg = EmailMessage()
    msg["content-type"] = value
    subtype = msg.get_content_subtype()
    return msg.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            body = await self._read_body(headers, receive)
        except ApiError as exc:
            await error_response(exc)(scope, receive, send)
            return
        if body is None:  # the client went away while sending
            return
        if body and not is_json_content_type(headers.get("content-type")):
            refusal = ApiError(
                415, "send the request body as JSON: 'Content-Type: application/json'"
            )
            await error_response(refusal)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | None:
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise ApiError(400, "malformed Content-Length header")
            if int(declared) > self.max_body_bytes:
                raise _too_large(self.max_body_bytes)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _too_large(self.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
