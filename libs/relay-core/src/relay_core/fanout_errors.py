"""The errors a fan-out subscriber can see (re-exported by `relay_core.fanout`).

Their own module because both sides raise them: the hub (`HubUnavailable`
from `subscribe()`) and the subscription (`SubscriberTooSlow` from its next
read), and `relay_core.sse` catches them without needing either.
"""

from __future__ import annotations

__all__ = ["FanoutError", "HubUnavailable", "SubscriberTooSlow"]


class FanoutError(Exception):
    """Base of the errors a subscriber can see."""


class SubscriberTooSlow(FanoutError):
    """The subscriber's buffer overflowed; it was dropped and must resume from its last id."""


class HubUnavailable(FanoutError):
    """Redis cannot be reached (or the hub is not running): answer 503, retry later."""
