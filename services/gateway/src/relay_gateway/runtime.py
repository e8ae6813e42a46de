"""What a running gateway holds: settings, clients, and the objects built on them.

Clients (state's client, the Redis pool, the event fan-out hub) and
the background tasks built on them (the kill switch and interactive capacity
watchers, the key revocation listener) are created by `open_runtime`, which
the app's lifespan enters, and stopped when it exits; nothing connects at
import or at `create_app`. Creating them does not connect either, so the
gateway starts and answers `/healthz` while state and Redis are down. Each
shutdown step is guarded, so one that fails (a client closed mid-connect)
never leaves the others, and their tasks, running.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

from relay_core.auth import Authenticator, RevocationListener
from relay_core.auththrottle import AuthThrottle
from relay_core.fanout import EventHub
from relay_core.models import ModelCatalog
from relay_core.ratelimit import LocalLimiter
from relay_core.redis import create_redis
from relay_core.rediscalls import RedisCalls
from relay_core.state_client import StateClient
from relay_gateway.active_runs import ActiveRuns
from relay_gateway.admit_script import AdmitScript
from relay_gateway.cancels import Canceller
from relay_gateway.capacity import InteractiveCapacity
from relay_gateway.config import GatewaySettings
from relay_gateway.killswitch import KillSwitchWatcher
from relay_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: GatewaySettings
    metrics: GatewayMetrics
    catalog: ModelCatalog
    state: StateClient
    redis: Redis
    # The small Redis calls of every request of the same moment, one pipeline
    # (relay_core.rediscalls): rate limits and admissions.
    calls: RedisCalls
    auth: Authenticator
    kill_switch: KillSwitchWatcher
    admit_script: AdmitScript
    hub: EventHub
    cancels: Canceller
    active_runs: ActiveRuns
    interactive: InteractiveCapacity
    revocations: RevocationListener
    # This process's view of each key's rate limit (relay_core.ratelimit).
    local_limits: LocalLimiter


@asynccontextmanager
async def open_runtime(
    settings: GatewaySettings, metrics: GatewayMetrics, catalog: ModelCatalog
) -> AsyncIterator[Runtime]:
    timeout_s = settings.dependency_timeout_s
    state = StateClient(
        settings.state_url,
        settings.internal_token.get_secret_value(),
        timeout_s=timeout_s,
    )
    redis = create_redis(settings.redis_url, timeout_s=timeout_s, mode=settings.redis_mode)
    calls = RedisCalls(redis, closed="the gateway's Redis calls were closed")
    watcher = KillSwitchWatcher(redis, metrics, interval_s=settings.kill_switch_refresh_s)
    # The interactive stream's events come through the same engine as the
    # events service's; starting it needs no Redis.
    hub = EventHub(
        settings.redis_url,
        max_connections=settings.hub_max_connections,
        subscriber_buffer=settings.subscriber_buffer,
        timeout_s=timeout_s,
        client_name="relay-gateway",
        mode=settings.redis_mode,
    )
    auth = Authenticator(
        state,
        ttl_s=settings.auth_cache_ttl_s,
        negative_ttl_s=settings.auth_negative_ttl_s,
        throttle=AuthThrottle(redis, failures_per_min=settings.auth_failures_per_min),
    )
    runtime = Runtime(
        settings=settings,
        metrics=metrics,
        catalog=catalog,
        state=state,
        redis=redis,
        calls=calls,
        auth=auth,
        kill_switch=watcher,
        admit_script=AdmitScript(redis, calls),
        hub=hub,
        cancels=Canceller(state),
        active_runs=ActiveRuns(redis, state),
        interactive=InteractiveCapacity(
            redis,
            metrics,
            wait_s=settings.interactive_queue_timeout_s,
            admission_ttl_s=settings.interactive_admission_ttl_s,
            refresh_s=settings.kill_switch_refresh_s,
        ),
        revocations=RevocationListener(redis, auth),
        local_limits=LocalLimiter(),
    )
    watcher.start()
    runtime.interactive.start()
    runtime.revocations.start()
    await hub.start()
    try:
        yield runtime
    finally:
        await _quietly("event hub", hub.stop())
        await _quietly("revocation listener", runtime.revocations.stop())
        await _quietly("interactive capacity watcher", runtime.interactive.stop())
        await _quietly("cancellations", runtime.cancels.drain(timeout_s))
        await _quietly("kill switch watcher", watcher.stop())
        await _quietly("state client", state.aclose())
        await _quietly("redis calls", calls.aclose())
        await _quietly("redis client", redis.aclose())


async def _quietly(what: str, closing: Awaitable[None]) -> None:
    """One shutdown step; its failure is logged and never skips the steps after it."""
    try:
        await closing
    except Exception:
        log.warning("error while closing the %s", what, exc_info=True)
