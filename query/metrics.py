"""GET /metrics: what GET /stats shows, in the Prometheus text format (for Prometheus,
Grafana, Datadog ... scrapers), via prometheus_client's custom-collector API.

The figures are the worker process's own (as /stats: with several workers, each scrape
reaches one of them; the `pid` label tells them apart), read from the app at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from indexer.errors import IndexerError

PREFIX = "cooccur"


class StatsCollector:
    """Metrics from a /stats dict and the backend's current version, at each collect()."""

    def __init__(self, stats: Callable[[], dict[str, Any]], versions: Callable[[], list]) -> None:
        self.stats = stats
        self.versions = versions

    def collect(self) -> Iterator[Metric]:
        """One metric family per /stats figure (prometheus_client's Collector protocol)."""
        s = self.stats()
        pid = str(s.get("pid", ""))
        yield _gauge("uptime_seconds", "Seconds since this worker started.", [("pid", pid)], s["uptime_seconds"])
        requests = CounterMetricFamily(f"{PREFIX}_requests", "HTTP requests by route and status.",
                                       labels=["pid", "route", "status"])
        for key, n in s["requests"].items():
            route, _, status = key.rpartition(" ")
            requests.add_metric([pid, route, status], n)
        yield requests
        latency = GaugeMetricFamily(f"{PREFIX}_query_latency_ms",
                                    "Query latency percentiles over the last 10,000 queries (ms).",
                                    labels=["pid", "quantile"])
        for quantile, key in (("0.5", "p50"), ("0.99", "p99")):
            if s["query_latency_ms"][key] is not None:
                latency.add_metric([pid, quantile], s["query_latency_ms"][key])
        yield latency
        yield _gauge("queries_timed", "Queries in the latency window.", [("pid", pid)],
                     s["query_latency_ms"]["count"])
        events = s.get("events")
        if events is not None:
            stored = GaugeMetricFamily(f"{PREFIX}_events_stored", "User events in the event store, by action.",
                                       labels=["action"])
            for action, n in events["per_action"].items():
                stored.add_metric([action], n)
            yield stored
            yield _gauge("items_with_properties", "Items with stored properties.", [],
                         events["items_with_properties"])
        yield from self._index()
        refresh = s.get("refresh")
        if refresh is not None:
            runs = CounterMetricFamily(f"{PREFIX}_refresh_runs", "Background refreshes run (--refresh-every).",
                                       labels=["pid"])
            runs.add_metric([pid], refresh.get("runs", 0))
            failures = CounterMetricFamily(f"{PREFIX}_refresh_failures", "Background refreshes that failed.",
                                           labels=["pid"])
            failures.add_metric([pid], refresh.get("failures", 0))
            yield from (runs, failures)

    def _index(self) -> Iterable[Metric]:
        """The served index version (an info-style gauge = 1) and its documents."""
        try:
            current = [v for v in self.versions() if v.current]
        except IndexerError:
            current = []
        info = GaugeMetricFamily(f"{PREFIX}_index_version_info", "The current index version (value 1).",
                                 labels=["version"])
        documents = GaugeMetricFamily(f"{PREFIX}_index_documents", "Documents in the current index version.")
        for v in current:
            info.add_metric([v.name], 1)
            documents.add_metric([], v.documents)
        yield from (info, documents)


def _gauge(name: str, doc: str, labels: list[tuple[str, str]], value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=[k for k, _ in labels])
    g.add_metric([v for _, v in labels], value)
    return g


def render(app) -> tuple[bytes, str]:
    """(body, content type) of GET /metrics for a query.service.App."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(app.stats, app.rec.backend.versions))
    return generate_latest(registry), CONTENT_TYPE_LATEST
