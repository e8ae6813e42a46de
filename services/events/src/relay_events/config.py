"""Events service settings, read from `RELAY_*` environment variables.

The only module of the service that reads the environment.
`redis_max_connections` bounds every Redis connection the process opens,
whatever the number of subscribers (the fan-out hub's reader plus its pool,
the revocation listener, and the small pool of the key limits).

`rate_limit_per_min` and `max_streams_per_key` are the defaults for keys that
carry no value of their own; the rate limit's default must be the gateway's
(the two count against one limiter).

`cors_origins` (comma-separated) lets a web page of another origin read the
streams: the gateway's web console in dev, where the events service has a
port of its own; behind one ingress host the console is same-origin and it
stays empty (no CORS at all).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from relay_core.config import RelaySettings


class EventsSettings(RelaySettings):
    port: int = Field(default=8081, ge=0, le=65535)
    management_port: int = Field(default=9081, ge=0, le=65535)
    keepalive_s: float = Field(default=15.0, gt=0)
    # A keep-alive that cannot be written this long (the client stopped reading)
    # closes the stream.
    send_timeout_s: float = Field(default=30.0, gt=0)
    subscriber_buffer: int = Field(default=1000, ge=1)
    redis_max_connections: int = Field(default=16, ge=6)
    # Opening a stream counts against the key's rate limit (the gateway's limiter).
    rate_limit_per_min: int = Field(default=600, ge=1)
    # Streams one key may hold open at once, across every events replica.
    max_streams_per_key: int = Field(default=1000, ge=1)
    # A stream's place in its key's count lapses this long after its process
    # stopped renewing it (a crashed replica).
    stream_lease_s: float = Field(default=60.0, gt=0)
    auth_cache_ttl_s: float = Field(default=5.0, ge=0)
    auth_negative_ttl_s: float = Field(default=5.0, ge=0)
    # Failed authentications per minute per client address before 429
    # (relay_core.auththrottle), counted with the gateway's.
    auth_failures_per_min: int = Field(default=30, ge=1)
    graceful_shutdown_s: float = Field(default=5.0, ge=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value
