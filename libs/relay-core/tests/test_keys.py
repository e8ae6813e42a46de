"""Key names are part of the wire contract (KEDA triggers and runbooks name them)."""

from __future__ import annotations

import pytest

from relay_core import keys


def test_queue_names_match_design() -> None:
    assert keys.queue("background") == "relay:queue:background"
    assert keys.queue("interactive") == "relay:queue:interactive"
    assert keys.QUEUE_DEAD == "relay:queue:dead" and keys.RUNNERS_GROUP == "runners"


def test_unknown_pool_is_an_error() -> None:
    with pytest.raises(ValueError):
        keys.queue("batch")


def test_every_key_is_prefixed() -> None:
    built = [
        keys.events("r"), keys.lease("r"), keys.cancel("r"), keys.conv_messages("c"),
        keys.daily_cost("u", "2026-01-01"), keys.run_cost("r"), keys.breaker("p", "m"),
        keys.rate_limit("k"), keys.user_active_runs("u"), keys.enqueued("r"), keys.KILL_SWITCH,
    ]  # fmt: skip
    assert all(k.startswith(keys.PREFIX) for k in built)
    assert keys.conv_messages("c1") == "relay:conv:c1:messages"
