"""Prometheus metrics of the events service, read from the hub when scraped.

Why a collector and not counters updated on every event: the hub counts in
plain integers on its hot path (one event can go to thousands of
subscribers), and the scrape turns them into metrics. A registry per app, so
tests can build several apps in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from relay_core import tracing
from relay_core.connguard import ConnectionCollector
from relay_core.fanout import HubStats


class HubCollector(Collector):
    def __init__(self, stats: Callable[[], HubStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        yield GaugeMetricFamily(
            "relay_events_subscribers", "open event subscriptions (SSE streams)", s.subscribers
        )
        yield GaugeMetricFamily(
            "relay_events_runs_followed", "runs whose stream the reader follows", s.live_runs
        )
        yield CounterMetricFamily(
            "relay_events_delivered", "events delivered to subscribers", s.delivered
        )
        yield CounterMetricFamily(
            "relay_events_subscribers_dropped",
            "subscribers dropped for falling too far behind",
            s.dropped,
        )
        yield GaugeMetricFamily(
            "relay_events_redis_connections", "Redis connections held", s.redis_connections
        )
        yield GaugeMetricFamily(
            "relay_events_reader_connected",
            "1 when the stream reader's last Redis read succeeded",
            1 if s.reader_connected else 0,
        )


class LimitsCollector(Collector):
    def __init__(self, metrics: EventsMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "relay_events_rate_limited",
            "stream opens refused by the key's rate limit",
            self._metrics.rate_limited,
        )
        yield CounterMetricFamily(
            "relay_events_streams_refused",
            "stream opens refused by the key's cap on concurrent streams",
            self._metrics.streams_refused,
        )


class EventsMetrics:
    def __init__(self, stats: Callable[[], HubStats]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HubCollector(stats))
        tracing.register_metrics(self.registry)
        self.registry.register(ConnectionCollector())
        self.registry.register(LimitsCollector(self))
        self.rate_limited = 0
        self.streams_refused = 0

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
