"""Runner settings: defaults of the contract, and placeholder secrets refused outside dev."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from relay_runner.config import RunnerSettings


def test_defaults_match_the_configuration_contract() -> None:
    s = RunnerSettings(dev_mode=True)
    assert (s.management_port, s.runner_pool, s.runner_concurrency) == (9083, "background", 8)
    assert (s.lease_ttl_s, s.drain_timeout_s, s.max_deliveries) == (30.0, 60.0, 5)
    assert (s.step_budget, s.events_retention_s, s.block_ms) == (20, 86400.0, 1000)
    assert s.consumer_name and s.autoclaim_every_s == 10.0


def test_placeholder_secrets_are_refused_outside_dev_mode() -> None:
    with pytest.raises(ValidationError, match="RELAY_INTERNAL_TOKEN"):
        RunnerSettings(anthropic_api_key=SecretStr("real-key"))
    with pytest.raises(ValidationError, match="RELAY_ANTHROPIC_API_KEY"):
        RunnerSettings(internal_token=SecretStr("t0k3n-real"))
    ok = RunnerSettings(
        internal_token=SecretStr("t0k3n-real"), anthropic_api_key=SecretStr("real-key")
    )
    assert ok.openai_base_url is None  # no OpenAI endpoint: no OpenAI key needed
    with pytest.raises(ValidationError, match="RELAY_OPENAI_API_KEY"):
        RunnerSettings(
            internal_token=SecretStr("t0k3n-real"),
            anthropic_api_key=SecretStr("real-key"),
            openai_base_url="http://x",
        )


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        RunnerSettings(dev_mode=True, runner_pool="nightly")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        RunnerSettings(dev_mode=True, runner_concurrency=0)
