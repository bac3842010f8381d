"""The request log's counters in ``/metrics``: whether the recorder and its store keep up.

Read from `AsyncRouter.recording` when ``/metrics`` is scraped, never on a request's
path. A fleet writing one PostgreSQL log shows here whether every process's writer
keeps up: records waiting, records dropped (the recorder's queue full, or a
PostgreSQL store's backlog full during an outage), the store's outages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..observe.status import RecorderStatus

__all__ = ["RecorderMetrics"]


class RecorderMetrics(Collector):
    """Series (one value each, for this process):

    ``llmroute_log_records_queued``: records waiting to be written.
    ``llmroute_log_records_recorded_total``: records handed to the store and sinks.
    ``llmroute_log_records_dropped_total``: requests not recorded, the queue full.
    ``llmroute_log_records_failed_total``: records lost to an error while built.
    ``llmroute_log_sink_errors_total``: batches a store or sink failed to write.
    ``llmroute_log_store_waiting``: records a PostgreSQL store keeps for its server.
    ``llmroute_log_store_outages_total``: times that server became unreachable.
    ``llmroute_log_store_dropped_total``: records dropped, that backlog full.
    """

    def __init__(self, status: Callable[[], RecorderStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        gauges = (
            ("llmroute_log_records_queued", "Request records waiting to be written", status.queued),
            ("llmroute_log_store_waiting", "Records a PostgreSQL store keeps while its server "
             "is unreachable", status.store_waiting),
        )  # fmt: skip
        for name, doc, value in gauges:
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge
        counters = (
            ("llmroute_log_records_recorded", "Request records handed to the store and sinks",
             status.recorded),
            ("llmroute_log_records_dropped", "Requests not recorded: the recorder's queue was "
             "full", status.dropped),
            ("llmroute_log_records_failed", "Records lost to an error while built",
             status.failed),
            ("llmroute_log_sink_errors", "Batches a store or sink failed to write",
             status.sink_errors),
            ("llmroute_log_store_outages", "Times a PostgreSQL store's server became "
             "unreachable", status.store_outages),
            ("llmroute_log_store_dropped", "Records a PostgreSQL store dropped, its backlog "
             "full", status.store_dropped),
        )  # fmt: skip
        for name, doc, value in counters:
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], value)
            yield counter
