"""Backoff for calls to Redis and state: exponential with full jitter, capped."""

from __future__ import annotations

import asyncio
import random


class Backoff:
    def __init__(self, *, base_s: float = 0.1, cap_s: float = 5.0) -> None:
        self._base_s = base_s
        self._cap_s = cap_s
        self._tries = 0

    def reset(self) -> None:
        self._tries = 0

    def next_delay(self) -> float:
        ceiling = min(self._cap_s, self._base_s * 2**self._tries)
        self._tries = min(self._tries + 1, 30)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())
