"""When to try again, and how long to wait: one policy for requests and streams.

- Network errors (connection refused or reset, a read that timed out, a
  server that went away mid-body) and 502/504 are retried: the request is
  safe to repeat (reads, and submissions carry one `Idempotency-Key` across
  their retries, so a retry never makes a second run).
- 429 and 503 are retried after the server's `Retry-After` when it gives one,
  except a 503 for the kill switch (retrying cannot help; the caller is told
  at once) .
- Waits are exponential with full jitter (AWS's "full jitter": uniform in
  [0, min(cap, base * 2^n)]), so a thousand clients dropped by one restart
  do not come back in lockstep.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import httpx

from relay_client.errors import RelayError

__all__ = ["NETWORK_ERRORS", "Backoff", "RetryPolicy", "retryable"]

# Everything httpx raises when the exchange failed on the wire.
NETWORK_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,)
RETRY_STATUSES = frozenset({429, 502, 503, 504})
FINAL_REASONS = frozenset({"kill_switch"})


def retryable(exc: RelayError) -> bool:
    return exc.status in RETRY_STATUSES and exc.reason not in FINAL_REASONS


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` for one request; `give_up_after_s` for a stream's reconnects."""

    max_attempts: int = 6
    base_s: float = 0.2
    cap_s: float = 5.0
    give_up_after_s: float = 300.0


@dataclass
class Backoff:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    failures: int = 0
    since: float | None = None  # monotonic time of the first failure in a row

    def failed(self, retry_after_s: float | None = None) -> float:
        """Record a failure; the seconds to wait before the next try."""
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
        ceiling = min(self.policy.cap_s, self.policy.base_s * 2 ** (self.failures - 1))
        wait = random.uniform(0, ceiling)  # noqa: S311 - jitter, not crypto
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return wait

    def exhausted(self) -> bool:
        """A stream's reconnects past the deadline."""
        return self.since is not None and (
            time.monotonic() - self.since > self.policy.give_up_after_s
        )

    def down_for_s(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def reset(self) -> None:
        self.failures = 0
        self.since = None
