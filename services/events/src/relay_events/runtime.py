"""What a running events service holds: settings, the fan-out hub, state's client.

`open_runtime` (entered by the app's lifespan) creates them and closes them on
exit; nothing connects at import or in `create_app`, and starting the hub does
not need Redis, so the service answers `/healthz` while Redis and state are
down and recovers by itself when they return.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from redis.asyncio import Redis

from relay_core.auth import Authenticator, RevocationListener
from relay_core.auththrottle import AuthThrottle
from relay_core.fanout import EventHub
from relay_core.ratelimit import LocalLimiter
from relay_core.redis import create_redis
from relay_core.state_client import StateClient
from relay_events.config import EventsSettings
from relay_events.metrics import EventsMetrics
from relay_events.streamcap import StreamCap

log = logging.getLogger(__name__)

LIMITS_CONNECTIONS = 4  # Redis connections of the key limits (rate, streams)


@dataclass
class Runtime:
    settings: EventsSettings
    hub: EventHub
    state: StateClient
    auth: Authenticator
    metrics: EventsMetrics
    # The key limits: the rate limiter's and the stream cap's Redis client.
    redis: Redis
    streams: StreamCap
    # This process's view of each key's rate limit (relay_core.ratelimit).
    local_limits: LocalLimiter
    # Set by sse-starlette when the server starts shutting down (one for all
    # responses): the hub then ends every stream cleanly.
    shutdown: anyio.Event


async def _drain_on_shutdown(shutdown: anyio.Event, hub: EventHub) -> None:
    await shutdown.wait()
    log.info("shutting down: ending open event streams")
    hub.drain()


@asynccontextmanager
async def open_runtime(settings: EventsSettings) -> AsyncIterator[Runtime]:
    timeout_s = settings.dependency_timeout_s
    state = StateClient(
        settings.state_url, settings.internal_token.get_secret_value(), timeout_s=timeout_s
    )
    # One connection of the budget listens for revoked keys, a few serve the key
    # limits (rate, streams); the hub gets the rest, so the process stays within
    # RELAY_REDIS_MAX_CONNECTIONS whatever the load.
    hub = EventHub(
        settings.redis_url,
        max_connections=settings.redis_max_connections - 1 - LIMITS_CONNECTIONS,
        subscriber_buffer=settings.subscriber_buffer,
        timeout_s=timeout_s,
        client_name="relay-events",
        mode=settings.redis_mode,
    )
    await hub.start()
    limits_redis = create_redis(
        settings.redis_url,
        timeout_s=timeout_s,
        max_connections=LIMITS_CONNECTIONS,
        mode=settings.redis_mode,
    )
    auth = Authenticator(
        state,
        ttl_s=settings.auth_cache_ttl_s,
        negative_ttl_s=settings.auth_negative_ttl_s,
        throttle=AuthThrottle(limits_redis, failures_per_min=settings.auth_failures_per_min),
    )
    pubsub_redis = create_redis(
        settings.redis_url, timeout_s=timeout_s, max_connections=1, mode=settings.redis_mode
    )
    revocations = RevocationListener(pubsub_redis, auth)
    revocations.start()
    streams = StreamCap(limits_redis, lease_s=settings.stream_lease_s)
    streams.start()
    shutdown = anyio.Event()
    drainer = asyncio.create_task(_drain_on_shutdown(shutdown, hub))
    try:
        yield Runtime(
            settings=settings,
            hub=hub,
            state=state,
            auth=auth,
            metrics=EventsMetrics(hub.stats),
            shutdown=shutdown,
            redis=limits_redis,
            streams=streams,
            local_limits=LocalLimiter(),
        )
    finally:
        drainer.cancel()
        await streams.stop()
        await limits_redis.aclose()
        await revocations.stop()
        await pubsub_redis.aclose()
        await hub.stop()
        await state.aclose()
