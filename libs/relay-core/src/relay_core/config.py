"""Settings shared by every service; each service subclasses it in its config.py.

Only `config.py` modules read the environment. Secrets that are missing or
still a placeholder stop a service at start-up unless `RELAY_DEV_MODE` is on,
so a pod can never run with the dev token by accident.

The `http_*` settings are the public port's connection hygiene
(`relay_core.connguard`); `management_port` is the second port, for probes
and metrics (`relay_core.httpserver`). Each service sets its own default
ports (the runner serves only the management port).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from relay_core.tracing import TracingConfig

DEV_INTERNAL_TOKEN = "dev-internal-token"  # noqa: S105 - the documented dev placeholder
PLACEHOLDERS = frozenset({"", "changeme", "change-me", DEV_INTERNAL_TOKEN, "sim-key"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        # A bad level would otherwise surface as a traceback from logging.setLevel.
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


LogLevel = Annotated[str, AfterValidator(_log_level)]


def parse_proxies(value: str) -> tuple[str, ...]:
    """`10.0.0.0/8, 192.168.1.4` as a tuple; ValueError naming a bad entry."""
    entries = tuple(e.strip() for e in value.split(",") if e.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return entries


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    management_port: int = Field(default=9080, ge=0, le=65535)
    # The public port's connection hygiene (relay_core.connguard).
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=30)
    http_body_timeout_s: float = Field(default=10.0, gt=0, le=300)
    http_body_min_rate: int = Field(default=500, ge=1)  # bytes per second
    http_keepalive_s: int = Field(default=5, ge=1, le=600)
    # Open connections past which new ones are closed at once; unset: the
    # open-file limit less a tenth (at least 256) kept for the process itself.
    http_max_connections: int | None = Field(default=None, ge=1)
    # Comma-separated addresses or networks (CIDR) whose X-Forwarded-For is
    # believed (the ingress controller's); empty: none, the peer is the client.
    trusted_proxies: str = ""
    log_level: LogLevel = "INFO"
    dev_mode: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    # A plain server or a Redis Cluster: `auto` asks the server (relay_core.redis).
    redis_mode: Literal["auto", "standalone", "cluster"] = "auto"
    # How many partitions runs are spread over (relay_core.partitions): the same
    # in every process of a deployment; changing it is a drain (docs/design.md).
    redis_partitions: int = Field(default=24, ge=1, le=1024)
    state_url: str = "http://127.0.0.1:8082"
    internal_token: SecretStr = SecretStr(DEV_INTERNAL_TOKEN)
    # Timeouts on every dependency call, so a dead dependency is a fast 503,
    # never a hanging request.
    dependency_timeout_s: float = 2.0
    # Tracing (relay_core.tracing): OpenTelemetry's standard variables, not
    # RELAY_ ones, so any OTLP backend's instructions apply as written. The SDK
    # reads the others itself (OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER,
    # OTEL_BSP_*); these decide whether tracing is on at all.
    otel_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    otel_traces_exporter: Literal["otlp", "none"] = Field(
        default="otlp", validation_alias="OTEL_TRACES_EXPORTER"
    )
    otel_service_name: str = Field(default="", validation_alias="OTEL_SERVICE_NAME")
    # Prompts and completions in spans (they hold user data): off unless asked.
    trace_content: bool = False

    def tracing_config(self) -> TracingConfig:
        return TracingConfig(
            endpoint=self.otel_endpoint,
            disabled=self.otel_sdk_disabled,
            exporter=self.otel_traces_exporter,
            service_name=self.otel_service_name,
            content=self.trace_content,
        )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        return ", ".join(parse_proxies(value))

    @property
    def trusted_proxy_list(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.trusted_proxies.split(",") if p.strip())

    def secret_fields(self) -> dict[str, SecretStr | None]:
        """Secrets that must not be placeholders outside dev mode."""
        return {"internal_token": self.internal_token}

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> RelaySettings:
        if self.dev_mode:
            return self
        for name, value in self.secret_fields().items():
            if value is None or value.get_secret_value() in PLACEHOLDERS:
                # `setting` in the error's context: the entry point names it
                # (relay_core.entrypoint), as it does a field's own errors.
                raise PydanticCustomError(
                    "placeholder_secret",
                    "{setting} is missing or a placeholder; "
                    "set a real secret or RELAY_DEV_MODE=true for local use",
                    {"setting": f"RELAY_{name.upper()}"},
                )
        return self
