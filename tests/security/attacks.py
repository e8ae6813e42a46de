"""The hostile-client attacks of issue 17, small and bounded, as functions and a CLI.

    .venv/bin/python tests/security/attacks.py [--only slow,flood,streams,pool,wrongkeys,public]

With no URL given it starts a stack of its own (relay_devstack, the `make dev`
code path, free ports on 127.0.0.1, a temporary folder) and prints one JSON
object per attack with its figures: connections held, streams opened, the
other tenant's wait, the valid tenant's latency under a wrong-key burst. The
same script ran before and after the fixes; the figures are in the closing
note of the change.

Everything goes to 127.0.0.1 only, each attack is bounded in count and in
time (`--scale` divides every count). The test suite (tests/security) uses
these functions at a scale CI can afford; this module is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

LOCAL = "127.0.0.1"


# --------------------------------------------------------------- slow connections


@dataclass
class Held:
    """Connections opened by an attack and when the server closed each (None: still open)."""

    opened: int = 0
    failed_to_open: int = 0
    closed_after_s: list[float | None] = field(default_factory=list)

    def closed_within(self, seconds: float) -> int:
        return sum(1 for t in self.closed_after_s if t is not None and t <= seconds)

    @property
    def still_open(self) -> int:
        return sum(1 for t in self.closed_after_s if t is None)

    def summary(self) -> dict[str, Any]:
        closed = [t for t in self.closed_after_s if t is not None]
        return {
            "opened": self.opened,
            "failed_to_open": self.failed_to_open,
            "closed_by_server": len(closed),
            "held_at_end": self.still_open,
            "median_close_s": round(statistics.median(closed), 2) if closed else None,
        }


async def _watch_close(reader: asyncio.StreamReader, started: float) -> float:
    """Seconds until the server closed the connection (anything it sends is read)."""
    while True:
        try:
            chunk = await reader.read(4096)
        except (ConnectionError, OSError):
            break
        if not chunk:
            break
    return time.monotonic() - started


Dribble = Callable[[asyncio.StreamWriter, int], bytes | None]


async def _one_slow(
    port: int, opening: bytes, dribble: bytes, interval_s: float, duration_s: float
) -> float | str | None:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOCAL, port), 5)
    except (OSError, TimeoutError):
        return "failed"
    watcher = asyncio.ensure_future(_watch_close(reader, started))
    try:
        if opening:
            writer.write(opening)
        while time.monotonic() - started < duration_s:
            done, _ = await asyncio.wait({watcher}, timeout=interval_s)
            if done:
                return watcher.result()
            if dribble:
                try:
                    writer.write(dribble)
                    await writer.drain()
                except (ConnectionError, OSError):
                    return await watcher
        return None
    finally:
        watcher.cancel()
        writer.close()


SLOW_HEADER_OPENING = b"GET /v1/runs HTTP/1.1\r\nHost: relay\r\n"
SLOW_HEADER_DRIBBLE = b"X-Slow: 1\r\n"
SLOW_BODY_OPENING = (
    b"POST /v1/runs HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer rk_nothing\r\nContent-Length: 4096\r\n\r\n"
)


async def slow_connections(
    port: int, *, kind: str, n: int, interval_s: float, duration_s: float
) -> Held:
    """`n` connections of one kind, held for up to `duration_s`:

    - `header`: a request line, then one header line every `interval_s`;
    - `body`: a POST's headers, then one byte of its body every `interval_s`;
    - `idle`: nothing at all after the TCP handshake."""
    opening, dribble = {
        "header": (SLOW_HEADER_OPENING, SLOW_HEADER_DRIBBLE),
        "body": (SLOW_BODY_OPENING, b"{"),
        "idle": (b"", b""),
    }[kind]
    results = await asyncio.gather(
        *(_one_slow(port, opening, dribble, interval_s, duration_s) for _ in range(n))
    )
    held = Held()
    for result in results:
        if result == "failed":
            held.failed_to_open += 1
        else:
            held.opened += 1
            held.closed_after_s.append(result if isinstance(result, float) else None)
    return held


async def flood(port: int, *, n: int, settle_s: float = 1.0) -> Held:
    """`n` idle connections opened as fast as possible; which ones the server
    closed within `settle_s` (refused at once) and which it still holds. Close
    times count from each connection's own opening."""
    conns: list[tuple[asyncio.StreamWriter, asyncio.Future[float]]] = []
    held = Held()
    for _ in range(n):
        opened = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(LOCAL, port)
        except OSError:
            held.failed_to_open += 1
            continue
        conns.append((writer, asyncio.ensure_future(_watch_close(reader, opened))))
    held.opened = len(conns)
    if conns:
        await asyncio.wait([w for _, w in conns], timeout=settle_s)
    for writer, watcher in conns:
        held.closed_after_s.append(watcher.result() if watcher.done() else None)
        watcher.cancel()
        writer.close()
    return held


# ------------------------------------------------------------------- HTTP helpers


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sim(text: str, **directive: Any) -> str:
    """A message with a modelsim directive (tokens, token_delay_ms, ...)."""
    return f"{text}\n#sim {json.dumps(directive)}"


def create_key(gateway: str, admin_key: str, **limits: Any) -> str:
    body = {"user_id": f"atk-{uuid.uuid4().hex[:10]}", "name": "attack", **limits}
    resp = httpx.post(f"{gateway}/v1/admin/keys", json=body, headers=bearer(admin_key), timeout=10)
    resp.raise_for_status()
    return str(resp.json()["api_key"])


async def open_streams(
    events: str, key: str, run_id: str, *, n: int, read_to_end: bool = False
) -> dict[str, Any]:
    """Open `n` event streams of one run at once; statuses, and how many events
    the accepted ones carried (read to `done` when `read_to_end`)."""
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=0)
    statuses: dict[int, int] = {}
    reasons: dict[str, int] = {}
    events_read = 0
    url = f"{events}/v1/runs/{run_id}/events"
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=bearer(key)) as client:

        async def one() -> None:
            nonlocal events_read
            try:
                async with client.stream("GET", url) as resp:
                    statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                    if resp.status_code != 200:
                        body = json.loads(await resp.aread())
                        reason = str(body["error"].get("reason") or body["error"]["type"])
                        reasons[reason] = reasons.get(reason, 0) + 1
                    elif read_to_end:
                        async for line in resp.aiter_lines():
                            if line.startswith("event:"):
                                events_read += 1
            except httpx.HTTPError:
                statuses[0] = statuses.get(0, 0) + 1

        await asyncio.gather(*(one() for _ in range(n)))
    return {"statuses": statuses, "refusals": reasons, "events_read": events_read}


def finished_run(gateway: str, key: str, *, tokens: int = 20) -> str:
    """A run submitted and waited for until it finished (its log complete)."""
    with httpx.Client(base_url=gateway, headers=bearer(key), timeout=30) as client:
        resp = client.post("/v1/runs", json={"message": sim("replay me", tokens=tokens)})
        resp.raise_for_status()
        run_id = str(resp.json()["run_id"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.25)  # a few polls: the key may have a small rate limit
            resp = client.get(f"/v1/runs/{run_id}")
            if resp.status_code == 200 and resp.json()["status"] == "succeeded":
                return run_id
    raise RuntimeError(f"run {run_id} did not finish")


async def first_token_s(gateway: str, key: str, message: str, *, timeout_s: float = 30) -> Any:
    """Seconds from `POST /v1/chat/stream` to its first `token` event, or the
    refusal (status and reason) when the chat was not admitted."""
    started = time.monotonic()
    async with (
        httpx.AsyncClient(timeout=timeout_s, headers=bearer(key)) as client,
        client.stream("POST", f"{gateway}/v1/chat/stream", json={"message": message}) as resp,
    ):
        if resp.status_code != 200:
            body = json.loads(await resp.aread())
            return {"status": resp.status_code, "reason": body["error"].get("reason")}
        async for line in resp.aiter_lines():
            if line.startswith("event: token"):
                return round(time.monotonic() - started, 3)
    return {"status": 200, "reason": "no token"}


async def detached_chats(gateway: str, key: str, message: str, *, n: int) -> dict[int, int]:
    """`n` chats that detach (they keep running) once their first event arrived."""
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(timeout=30, headers=bearer(key)) as client:

        async def one() -> None:
            body = {"message": message, "detach": True}
            async with client.stream("POST", f"{gateway}/v1/chat/stream", json=body) as resp:
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                if resp.status_code == 200:
                    async for line in resp.aiter_lines():
                        if line.startswith("event:"):
                            break

        await asyncio.gather(*(one() for _ in range(n)))
    return statuses


async def latency_while(
    probe: Callable[[], Awaitable[int]], attack: Awaitable[Any], *, interval_s: float = 0.05
) -> tuple[list[float], list[int], Any]:
    """Latencies (s) and statuses of `probe` called every `interval_s` while `attack` runs."""
    task = asyncio.ensure_future(attack)
    latencies: list[float] = []
    statuses: list[int] = []
    while not task.done():
        started = time.monotonic()
        statuses.append(await probe())
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(interval_s)
    return latencies, statuses, task.result()


async def _lean_get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """One request on a kept-alive connection, its status (the body is skipped)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def wrong_keys(
    gateway: str, *, n: int, concurrency: int, forwarded_for: str | None = None
) -> dict[int, int]:
    """`n` requests, each with a distinct made-up key, from `concurrency`
    kept-alive connections. A lean client (raw HTTP/1.1, not httpx): on a small
    machine a Python HTTP client would spend more CPU than the server and
    measure itself."""
    host, port = gateway.rsplit("/", 1)[1].rsplit(":", 1)
    extra = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    statuses: dict[int, int] = {}
    remaining = [n]

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                key = "rk_" + uuid.uuid4().hex + uuid.uuid4().hex
                request = (
                    f"GET /v1/runs HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {key}\r\n"
                    f"{extra}\r\n"
                ).encode()
                try:
                    code = await _lean_get(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    statuses[0] = statuses.get(0, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                    continue
                statuses[code] = statuses.get(code, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def verify_calls(metrics_url: str) -> int:
    """Key verifications state has answered (its request counter, any status)."""
    text = httpx.get(metrics_url, timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("relay_state_requests_total")
            and 'route="/internal/v1/keys/verify"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


# ------------------------------------------------------------------------ the CLI


@dataclass
class Target:
    gateway: str
    events: str
    state: str
    admin_key: str
    user_key: str
    management: dict[str, str]
    stack: Any = None

    @property
    def gateway_port(self) -> int:
        return int(self.gateway.rsplit(":", 1)[1])

    @property
    def events_port(self) -> int:
        return int(self.events.rsplit(":", 1)[1])


async def attack_slow(t: Target, scale: int) -> dict[str, Any]:
    n = max(10, 300 // scale)
    out: dict[str, Any] = {}
    for port_name, port in (("gateway", t.gateway_port), ("events", t.events_port)):
        kinds = await asyncio.gather(
            *(
                slow_connections(port, kind=k, n=n, interval_s=2.0, duration_s=40.0)
                for k in ("header", "body", "idle")
            )
        )
        out[port_name] = {
            k: h.summary() for k, h in zip(("header", "body", "idle"), kinds, strict=True)
        }
    return out


async def attack_flood(t: Target, scale: int) -> dict[str, Any]:
    n = max(50, 2000 // scale)
    held = await flood(t.gateway_port, n=n)
    return {"gateway": held.summary()}


async def attack_streams(t: Target, scale: int) -> dict[str, Any]:
    run_id = await asyncio.to_thread(finished_run, t.gateway, t.user_key, tokens=50)
    slow_key = await asyncio.to_thread(create_key, t.gateway, t.admin_key, rate_limit_per_min=30)
    # The run must be the key's user's: a run of its own, submitted under its limit.
    own_run = await asyncio.to_thread(finished_run, t.gateway, slow_key, tokens=5)
    limited = await open_streams(t.events, slow_key, own_run, n=max(30, 300 // scale))
    replay = await open_streams(
        t.events, t.user_key, run_id, n=max(50, 1000 // scale), read_to_end=True
    )
    return {"30_per_min_key": limited, "one_run_many_streams": replay}


async def attack_pool(t: Target, scale: int) -> dict[str, Any]:
    hog = await asyncio.to_thread(create_key, t.gateway, t.admin_key)
    other = await asyncio.to_thread(create_key, t.gateway, t.admin_key)
    long_chat = sim("long chat", tokens=3000, token_delay_ms=10)  # ~30 s each
    hogged = await detached_chats(t.gateway, hog, long_chat, n=12)
    waits = []
    for _ in range(3):
        waits.append(await first_token_s(t.gateway, other, sim("hello", tokens=3), timeout_s=30))
    return {"hog_chats": hogged, "other_tenant_first_token": waits}


ATTACKER = "203.0.113.7"  # through X-Forwarded-For: the CLI's stack trusts 127.0.0.1


async def attack_wrong_keys(t: Target, scale: int) -> dict[str, Any]:
    """The wrong keys and the valid tenant's probes come from one address."""
    state_metrics = f"{t.management.get('state', t.state)}/metrics"
    verified_before = await asyncio.to_thread(verify_calls, state_metrics)
    headers = {**bearer(t.user_key), "X-Forwarded-For": ATTACKER}
    async with httpx.AsyncClient(timeout=30, headers=headers) as valid:

        async def probe() -> int:
            return (await valid.get(f"{t.gateway}/v1/runs", params={"limit": 1})).status_code

        idle, _, _ = await latency_while(probe, asyncio.sleep(3))
        started = time.monotonic()
        burst, statuses, wrong = await latency_while(
            probe,
            wrong_keys(
                t.gateway, n=max(500, 12_000 // scale), concurrency=50, forwarded_for=ATTACKER
            ),
        )
        took = time.monotonic() - started
    verified = await asyncio.to_thread(verify_calls, state_metrics) - verified_before
    return {
        "wrong_keys_per_s": round(sum(wrong.values()) / took),
        "state_verify_calls": verified,
        "valid_p50_ms_idle": percentile(idle, 0.5),
        "valid_p50_ms_during_burst": percentile(burst, 0.5),
        "valid_p99_ms_during_burst": percentile(burst, 0.99),
        "valid_statuses_during_burst": {str(s): statuses.count(s) for s in set(statuses)},
        "wrong_key_statuses": wrong,
    }


async def attack_public(t: Target, scale: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = await client.get(f"{t.gateway}/metrics")
        health = await client.get(f"{t.gateway}/healthz")
        out: dict[str, Any] = {
            "public_metrics_status": metrics.status_code,
            "public_healthz": health.json() if health.status_code == 200 else health.status_code,
        }
        if "gateway" in t.management:
            mgmt = await client.get(f"{t.management['gateway']}/metrics")
            out["management_metrics_status"] = mgmt.status_code
    return out


ATTACKS: dict[str, Callable[[Target, int], Awaitable[dict[str, Any]]]] = {
    "public": attack_public,
    "wrongkeys": attack_wrong_keys,
    "streams": attack_streams,
    "pool": attack_pool,
    "flood": attack_flood,
    "slow": attack_slow,
}

# The stack the CLI starts: a connection cap low enough to reach with a
# client on the same machine, and 127.0.0.1 as a trusted proxy so the wrong-key
# attack speaks for another address and does not throttle the CLI's own
# requests to the attacks after it (before the fix both were unknown settings,
# ignored; uvicorn then believed X-Forwarded-For from 127.0.0.1 by default).
OVERRIDES = {
    "gateway": {"RELAY_HTTP_MAX_CONNECTIONS": "1000", "RELAY_TRUSTED_PROXIES": "127.0.0.1"},
    "events": {"RELAY_TRUSTED_PROXIES": "127.0.0.1"},
}


def own_stack() -> Target:
    from relay_devstack.harness import start_test_stack

    stack = start_test_stack(OVERRIDES)
    mgmt_url = getattr(stack, "management_url", None)
    management = {n: mgmt_url(n) for n in ("gateway", "events", "state")} if mgmt_url else {}
    return Target(
        gateway=stack.gateway_url,
        events=stack.events_url,
        state=stack.state_url,
        admin_key=stack.admin_key,
        user_key=stack.api_key,
        management=management,
        stack=stack,
    )


async def run_all(t: Target, only: list[str], scale: int) -> None:
    for name in only:
        started = time.monotonic()
        figures = await ATTACKS[name](t, scale)
        line = {"attack": name, "took_s": round(time.monotonic() - started, 1), **figures}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(ATTACKS), help="comma-separated attacks")
    parser.add_argument("--scale", type=int, default=1, help="divide every count by this")
    args = parser.parse_args()
    only = [a for a in args.only.split(",") if a]
    unknown = set(only) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attacks {sorted(unknown)}; known: {list(ATTACKS)}")
    target = own_stack()
    try:
        asyncio.run(run_all(target, only, args.scale))
    finally:
        from relay_devstack.harness import discard

        discard(target.stack)


if __name__ == "__main__":
    main()
