"""Settings for modelsim, read from `RELAY_MODELSIM_*` environment variables.

This is the only module that reads the environment.

Why the `*_ms` names: the delays are the simulator's public knobs
(`RELAY_MODELSIM_TOKEN_DELAY_MS`, `RELAY_MODELSIM_TTFT_MS`) and use the same
unit and names as the `#sim` directive keys, so a test author sets one unit
everywhere. Durations that are not knobs of a simulated reply follow the house
rule (`*_s`, float).

Why no placeholder-secret check: modelsim is a dev and test tool, never a
production dependency. With `API_KEY` unset it accepts any non-empty key, like
a permissive local provider; with it set, requests must carry exactly it.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process settings; every field is `RELAY_MODELSIM_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="RELAY_MODELSIM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    tokens: int = Field(default=30, ge=0, description="reply length without a directive")
    token_delay_ms: float = Field(default=5.0, ge=0)
    ttft_ms: float = Field(default=20.0, ge=0)
    api_key: SecretStr | None = None
    log_level: str = "INFO"
    access_log: bool = False
    shutdown_grace_s: float = Field(default=1.0, ge=0, description="drain time on SIGTERM")
    fault_seed: int | None = Field(default=None, description="seed of the fault RNG")
