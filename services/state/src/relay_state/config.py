"""Settings of the state service; the only module of state that reads the environment.

Why two classes: `relay-state migrate` and `relay-state create-key` talk to
Postgres only, so they must not demand the internal token (a Helm migration
Job has no business holding it). `DatabaseSettings` is what those commands
read; `StateSettings` is the full server configuration.

Why `database_url` is a secret but not checked for placeholders: the default
URL has no password in it (trust auth on a laptop) and is a sensible value in
a pod that reaches Postgres through a sidecar; it is a `SecretStr` so that a
URL that does carry a password is never logged.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from relay_core.config import LogLevel, RelaySettings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/relay"


class DatabaseSettings(BaseSettings):
    """What the database-only commands (`migrate`, `create-key`) need."""

    model_config = SettingsConfigDict(env_prefix="RELAY_", extra="ignore")

    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    log_level: LogLevel = "INFO"
    dependency_timeout_s: float = 2.0


class StateSettings(RelaySettings):
    port: int = 8082
    management_port: int = Field(default=9082, ge=0, le=65535)
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    # Bootstrap admin key: stored hashed at start-up (user "admin", role admin).
    admin_api_key: SecretStr | None = None
    history_cache_ttl_s: float = Field(default=3600.0, gt=0)
    reconcile_interval_s: float = Field(default=10.0, gt=0)
    reconcile_batch: int = Field(default=500, ge=1, le=10_000)
    # Younger runs may still be between their commit and their enqueue.
    reconcile_min_age_s: float = Field(default=5.0, ge=0)
    lease_ttl_s: float = Field(default=30.0, gt=0)
    events_retention_s: float = Field(default=86400.0, gt=0)
    queue_metrics_interval_s: float = Field(default=5.0, gt=0)
    db_pool_max: int = Field(default=20, ge=1, le=500)

    def secret_fields(self) -> dict[str, SecretStr | None]:
        fields = super().secret_fields()
        if self.admin_api_key is not None:
            # Optional, but when it is set it must not be a placeholder.
            fields["admin_api_key"] = self.admin_api_key
        return fields
