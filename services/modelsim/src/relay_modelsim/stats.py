"""Request and stream counters, in total, per model and per tag.

Decisions:

- Counting goes through a `Tracker`, one per request, that knows the request's
  model and tag and bumps every matching bucket at once.
- `POST /admin/reset` starts a new epoch. A tracker from an older epoch stops
  counting, so a stream that was open across a reset cannot drive
  `streams_open` negative or leak old tokens into the fresh numbers.
- Single event loop, synchronous updates: no locks needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Counters", "Stats", "Tracker"]


@dataclass
class Counters:
    streams_open: int = 0
    streams_total: int = 0
    requests_total: int = 0
    tokens_generated: int = 0
    streams_closed_early: int = 0
    errors_injected: int = 0


class Stats:
    def __init__(self) -> None:
        self.epoch = 0
        self.total = Counters()
        self.by_model: dict[str, Counters] = {}
        self.by_tag: dict[str, Counters] = {}

    def reset(self) -> None:
        self.epoch += 1
        self.total = Counters()
        self.by_model = {}
        self.by_tag = {}

    def track(self, *, model: str, tag: str | None) -> Tracker:
        return Tracker(self, model=model, tag=tag)

    def buckets(self, model: str, tag: str | None) -> list[Counters]:
        found = [self.total, self.by_model.setdefault(model, Counters())]
        if tag is not None:
            found.append(self.by_tag.setdefault(tag, Counters()))
        return found

    def snapshot(self) -> dict[str, Any]:
        return {
            **asdict(self.total),
            "by_model": {name: asdict(c) for name, c in sorted(self.by_model.items())},
            "by_tag": {name: asdict(c) for name, c in sorted(self.by_tag.items())},
        }

    def tag_snapshot(self, tag: str) -> dict[str, Any]:
        """One tag's counters; an unknown tag reads as all zeros."""
        return asdict(self.by_tag.get(tag, Counters()))


class Tracker:
    """The counters one request touches."""

    def __init__(self, stats: Stats, *, model: str, tag: str | None) -> None:
        self._stats = stats
        self._epoch = stats.epoch
        self._model = model
        self._tag = tag

    def _each(self) -> list[Counters]:
        if self._epoch != self._stats.epoch:
            return []
        return self._stats.buckets(self._model, self._tag)

    def request(self) -> None:
        for c in self._each():
            c.requests_total += 1

    def tokens(self, n: int) -> None:
        for c in self._each():
            c.tokens_generated += n

    def error_injected(self) -> None:
        for c in self._each():
            c.errors_injected += 1

    def stream_opened(self) -> None:
        for c in self._each():
            c.streams_open += 1
            c.streams_total += 1

    def stream_closed(self, *, early: bool) -> None:
        for c in self._each():
            c.streams_open -= 1
            if early:
                c.streams_closed_early += 1
