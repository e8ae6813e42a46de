"""A lean HTTP/1.1 + SSE client on a bare asyncio protocol, timing the first event.

Why not httpx: a Python HTTP client stack costs enough CPU on two cores to
delay the very events it times (interactive.py's `sdk` vs `raw` baselines
show how much). So one connection per request, the request written at once
(`Connection: close`), the chunked body and the SSE messages parsed in place
as bytes arrive, and each request's wall-clock and perf_counter marks kept in
a `Timing`. Only 127.0.0.1 is ever asked; every request is bounded by
`REQUEST_TIMEOUT_S`.

Not a bench script (no `main()`): bench/interactive.py imports it as a sibling.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

REQUEST_TIMEOUT_S = 60.0
SSE_SPLIT = re.compile(rb"\r?\n\r?\n")


@dataclass
class Timing:
    """One request, wall clock (time.time()) except `ttft` (perf_counter based)."""

    t0: float = 0.0
    p0: float = 0.0
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    t_head: float = 0.0
    ttft: float | None = None
    first: dict[str, tuple[str | None, float]] = field(default_factory=dict)  # type -> (id, t)
    ended: bool = False
    error: str = ""


class StreamClient(asyncio.Protocol):
    """One HTTP/1.1 request on its own connection; times the first `mark` SSE event.

    Reads the response to its `end` event (or the connection's close), so a
    relay run finishes normally instead of being cancelled by a disconnect.
    """

    def __init__(self, request: bytes, timing: Timing, *, mark: str, end: str) -> None:
        self.request = request
        self.timing = timing
        self.mark = mark
        self.end = end
        self.head = b""
        self.chunked = False
        self.buf = b""
        self.body = b""
        self.transport: asyncio.Transport | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now, pnow = time.time(), time.perf_counter()
        if not self.timing.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._parse_head(self.head[:end], now)
            data = self.head[end + 4 :]
        if self.chunked:
            self.buf += data
            self._dechunk()
        else:
            self.body += data
        self._messages(now, pnow)

    def _parse_head(self, head: bytes, now: float) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.timing.status = int(lines[0][9:12])
        self.timing.t_head = now
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.timing.headers[name.strip().lower()] = value.strip()
        self.chunked = self.timing.headers.get("transfer-encoding", "") == "chunked"

    def _dechunk(self) -> None:
        pos, buf = 0, self.buf
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0 or len(buf) < eol + 2 + size + 2:
                break
            self.body += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2
        self.buf = buf[pos:]

    def _messages(self, now: float, pnow: float) -> None:
        if self.timing.status != 200:
            return
        *messages, self.body = SSE_SPLIT.split(self.body)
        for msg in messages:
            kind, ident = "", None
            for line in msg.split(b"\n"):
                line = line.rstrip(b"\r")
                if line.startswith(b"event:"):
                    kind = line[6:].strip().decode()
                elif line.startswith(b"id:"):
                    ident = line[3:].strip().decode()
            if not kind:
                continue  # a keep-alive comment, or data without a type
            self.timing.first.setdefault(kind, (ident, now))
            if kind == self.mark and self.timing.ttft is None:
                self.timing.ttft = pnow - self.timing.p0
            if kind == self.end:
                self.timing.ended = True
                self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.finished.done():
            self.finished.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timing.status != 200 and not self.timing.error:
            self.timing.error = (self.buf + self.body)[-300:].decode(errors="replace")
        if not self.finished.done():
            self.finished.set_result(None)


def http_post(url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    data = json.dumps(body).encode()
    host = urlsplit(url).netloc
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(data)}\r\n"
        f"Connection: close\r\n{head}\r\n"
    ).encode() + data


async def lean_request(url: str, request: bytes, *, mark: str, end: str) -> Timing:
    timing = Timing(t0=time.time(), p0=time.perf_counter())
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            _, proto = await loop.create_connection(
                lambda: StreamClient(request, timing, mark=mark, end=end),
                host,
                port,
            )
            await proto.finished
    except (OSError, TimeoutError) as exc:
        timing.error = f"{type(exc).__name__}: {exc}"
    if timing.status and timing.status != 200 and not timing.error:
        timing.error = f"HTTP {timing.status}"
    return timing
