"""Placeholder secrets stop a service outside dev mode."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from relay_core.config import RelaySettings


def test_placeholder_token_refused_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_DEV_MODE", raising=False)
    monkeypatch.delenv("RELAY_INTERNAL_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="RELAY_INTERNAL_TOKEN"):
        RelaySettings()


def test_dev_mode_allows_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_DEV_MODE", "true")
    assert RelaySettings().dev_mode


def test_real_secret_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_DEV_MODE", raising=False)
    monkeypatch.setenv("RELAY_INTERNAL_TOKEN", "a-real-random-token-0123456789")
    assert RelaySettings().internal_token.get_secret_value().startswith("a-real")
