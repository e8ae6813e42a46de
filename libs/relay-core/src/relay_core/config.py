"""Settings shared by every service; each service subclasses it in its config.py.

Only `config.py` modules read the environment. Secrets that are missing or
still a placeholder stop a service at start-up unless `RELAY_DEV_MODE` is on,
so a pod can never run with the dev token by accident.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
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
