"""relay_core.entrypoint's description of bad settings: every variable named,
each problem said, no value given ever repeated (the processes themselves are
tested in tests/deploy/test_entrypoints.py)."""

from __future__ import annotations

import pytest
from pydantic import Field, SecretStr, ValidationError

from relay_core.config import RelaySettings
from relay_core.entrypoint import ConfigError, describe


class Sample(RelaySettings):
    workers: int = Field(default=1, ge=1)
    api_key: SecretStr = SecretStr("changeme")

    def secret_fields(self) -> dict[str, SecretStr | None]:
        return {**super().secret_fields(), "api_key": self.api_key}


def _error(**values: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Sample(**values)  # type: ignore[arg-type]
    return caught.value


def test_each_field_is_named_as_its_environment_variable() -> None:
    names, line = describe(Sample, _error(dev_mode=True, workers="lots", log_level="loud"))
    assert names == ["RELAY_LOG_LEVEL", "RELAY_WORKERS"]
    assert "RELAY_WORKERS: Input should be a valid integer" in line
    assert "RELAY_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in line
    assert "lots" not in line and "loud" not in line


def test_a_placeholder_secret_is_named_by_its_check() -> None:
    names, line = describe(Sample, _error(internal_token="a-real-token-0123456789"))
    assert names == ["RELAY_API_KEY"]
    assert line.startswith("RELAY_API_KEY is missing or a placeholder")
    assert "changeme" not in line and "a-real-token" not in line


def test_config_error_names_one_setting_or_several() -> None:
    one = ConfigError("RELAY_MODELS_FILE", "cannot load it")
    assert (one.settings, str(one)) == (["RELAY_MODELS_FILE"], "RELAY_MODELS_FILE: cannot load it")
    two = ConfigError(("RELAY_A", "RELAY_B"), "bad")
    assert str(two) == "RELAY_A or RELAY_B: bad"


def test_log_level_is_normalised() -> None:
    assert Sample(dev_mode=True, log_level=" debug ").log_level == "DEBUG"
