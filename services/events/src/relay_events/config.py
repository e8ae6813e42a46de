"""Events service settings, read from `RELAY_*` environment variables.

The only module of the service that reads the environment.
`redis_max_connections` bounds every Redis connection the process opens,
whatever the number of subscribers (the fan-out hub's reader plus its pool).
"""

from __future__ import annotations

from pydantic import Field

from relay_core.config import RelaySettings


class EventsSettings(RelaySettings):
    port: int = Field(default=8081, ge=0, le=65535)
    keepalive_s: float = Field(default=15.0, gt=0)
    # A keep-alive that cannot be written this long (the client stopped reading)
    # closes the stream.
    send_timeout_s: float = Field(default=30.0, gt=0)
    subscriber_buffer: int = Field(default=1000, ge=1)
    redis_max_connections: int = Field(default=16, ge=2)
    auth_cache_ttl_s: float = Field(default=5.0, ge=0)
    graceful_shutdown_s: float = Field(default=5.0, ge=0)
