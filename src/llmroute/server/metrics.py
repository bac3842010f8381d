"""Prometheus metrics of the gateway, from the `RouteInfo` of every response.

Each app has its own registry (two apps in one process never share series).
Counts are kept in plain lists on the event loop, and turned into
prometheus-client metric families when ``/metrics`` is scraped (a custom
collector): a request costs a few list updates, not a lock per series. The
cells a request updates are found once per kind of answer (endpoint, route,
target, status, key) and kept, so a request does not build and hash label
tuples for every series it counts in (with the cached target headers: 538k -> 520k
instructions per gateway request, callgrind, 1f23e95; oracle:
tests/test_fast_paths.py against plain counting).

Labels come from the configuration (route and provider names) and from the
models requests reach; the number of distinct provider/model pairs is capped
(`max_series`), beyond which the model label reads ``other``, so that clients
naming endless ``provider/model`` variants cannot grow the scrape without bound.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .._types import AttemptInfo, RouteInfo

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "GatewayMetrics"]

#: The ``content-type`` of the exposition.
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()

#: Seconds: from 5 ms (a cache hit, a refusal) to 5 minutes (a long generation).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
_ROUTE = ("route", "provider", "model")

Labels = tuple[str, ...]


class _Counter:
    """A counter family: a value per label set, each in a one-item list (a cell)."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.values: dict[Labels, list[float]] = {}

    def cell(self, labels: Labels) -> list[float]:
        """The cell of `labels` (a series shows from its first increment, not before)."""
        cell = self.values.get(labels)
        if cell is None:
            cell = self.values[labels] = [0.0]
        return cell

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.cell(labels)[0] += amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, cell in self.values.items():
            family.add_metric(list(labels), cell[0])
        return family


#: A histogram series: its bucket counts and a one-item list holding its sum.
_Buckets = tuple[list[int], list[float]]


class _Histogram:
    """A histogram family: bucket counts and a sum per label set."""

    __slots__ = ("bounds", "doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: Sequence[str], bounds: Sequence[float]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.bounds = tuple(bounds)
        self.values: dict[Labels, _Buckets] = {}

    def series(self, labels: Labels) -> _Buckets:
        entry = self.values.get(labels)
        if entry is None:
            entry = self.values[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        return entry

    def observe(self, labels: Labels, value: float) -> None:
        self.add(self.series(labels), value)

    def add(self, entry: _Buckets, value: float) -> None:
        entry[0][bisect_left(self.bounds, value)] += 1
        entry[1][0] += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = [*(repr(float(b)) for b in self.bounds), "+Inf"]
        for labels, (counts, total) in self.values.items():
            running, buckets = 0, []
            for edge, count in zip(edges, counts, strict=True):
                running += count
                buckets.append((edge, float(running)))
            family.add_metric(list(labels), buckets, total[0])
        return family


class _Answers:
    """The cells one kind of answer counts in (see `GatewayMetrics.answered`); those of
    series that not every answer reaches are found on first use."""

    __slots__ = ("cost", "duration", "input", "labels", "output", "requests", "ttft")

    def __init__(self, labels: Labels, requests: list[float]) -> None:
        self.labels = labels  # (route, provider, model)
        self.requests = requests
        self.duration: _Buckets | None = None
        self.ttft: _Buckets | None = None
        self.input: list[float] | None = None
        self.output: list[float] | None = None
        self.cost: list[float] | None = None


class GatewayMetrics(Collector):
    """The gateway's counters and histograms, and their Prometheus text exposition.

    Series:
        ``llmroute_requests_total``: requests answered, by endpoint, route,
            provider, model, HTTP status (499: the client went away) and key.
        ``llmroute_request_duration_seconds``: time to the whole answer.
        ``llmroute_time_to_first_token_seconds``: streams' time to first token.
        ``llmroute_tokens_total``: tokens by ``type`` (``input``, ``output``).
        ``llmroute_cost_usd_total``: cost, where the price is known.
        ``llmroute_cache_lookups_total``: by ``result`` (``hit``, ``miss``, ``bypass``).
        ``llmroute_attempts_total``: every attempt by outcome (failovers show here).
        ``llmroute_errors_total``: failed requests by error ``type``.
        ``llmroute_requests_in_flight``: requests and streams being answered.
    """

    def __init__(self, *, max_series: int = 1000) -> None:
        self._max_series = max_series
        self._models: set[tuple[str, str]] = set()
        self.in_flight = 0
        self._requests = _Counter(
            "llmroute_requests", "Requests answered by the gateway",
            ("endpoint", *_ROUTE, "status", "key"),
        )  # fmt: skip
        self._duration = _Histogram(
            "llmroute_request_duration_seconds", "Time from the request to the end of its answer",
            ("endpoint", *_ROUTE, "stream"), LATENCY_BUCKETS,
        )  # fmt: skip
        self._ttft = _Histogram(
            "llmroute_time_to_first_token_seconds",
            "Time from the request to a stream's first token", _ROUTE, LATENCY_BUCKETS,
        )  # fmt: skip
        self._tokens = _Counter(
            "llmroute_tokens", "Tokens used (input includes cached ones)", (*_ROUTE, "type")
        )
        self._cost = _Counter(
            "llmroute_cost_usd", "Cost in US dollars, where the price is known", _ROUTE
        )
        self._cache = _Counter(
            "llmroute_cache_lookups", "Cache lookups by result", ("route", "result")
        )
        self._attempts = _Counter(
            "llmroute_attempts", "Attempts sent to targets, by outcome",
            ("route", "provider", "model", "outcome"),
        )  # fmt: skip
        self._errors = _Counter(
            "llmroute_errors", "Requests that failed, by error type", ("endpoint", *_ROUTE, "type")
        )
        #: By (endpoint, route, provider, model, status, key, stream): the cells it counts in.
        self._answers: dict[tuple[object, ...], _Answers] = {}
        #: By (route, provider, model, outcome): the attempts counter's cell.
        self._attempt_cells: dict[tuple[str, str, str, str], list[float]] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def _model(self, provider: str, model: str) -> str:
        """`model`, or ``other`` once `max_series` provider/model pairs have been seen."""
        pair = (provider, model)
        if pair in self._models:
            return model
        if len(self._models) >= self._max_series:
            return "other"
        self._models.add(pair)
        return model

    def answered(
        self, endpoint: str, info: RouteInfo, *, status: int = 200, key: str | None = None
    ) -> None:
        """Count a request that got an answer (or a stream that ended, however it ended)."""
        route = info.route or ""
        stream = info.stream
        found = (endpoint, route, info.provider, info.model, status, key, stream)
        answers = self._answers.get(found)
        if answers is None:
            answers = self._answers_of(endpoint, info, status, key)
            # kept unless its model label is `other` (there is no end to those)
            if answers.labels[2] == (info.model or ""):
                self._answers[found] = answers
        answers.requests[0] += 1.0
        latency = info.latency_s
        if latency is not None:
            duration = answers.duration
            if duration is None:
                labels = (endpoint, *answers.labels, "true" if stream else "false")
                duration = answers.duration = self._duration.series(labels)
            self._duration.add(duration, latency)
        if stream and info.ttft_s is not None:
            ttft = answers.ttft
            if ttft is None:
                ttft = answers.ttft = self._ttft.series(answers.labels)
            self._ttft.add(ttft, info.ttft_s)
        self._count_usage(answers, info)
        if info.cache is not None:
            self._cache.inc((route, info.cache))
        self._count_attempts(route, info.attempts)

    def _count_usage(self, answers: _Answers, info: RouteInfo) -> None:
        usage = info.usage
        if usage is not None:
            if usage.input:
                cell = answers.input
                if cell is None:
                    cell = answers.input = self._tokens.cell((*answers.labels, "input"))
                cell[0] += usage.input
            if usage.output:
                cell = answers.output
                if cell is None:
                    cell = answers.output = self._tokens.cell((*answers.labels, "output"))
                cell[0] += usage.output
        cost = info.cost_usd
        if cost:
            cell = answers.cost
            if cell is None:
                cell = answers.cost = self._cost.cell(answers.labels)
            cell[0] += cost

    def _answers_of(self, endpoint: str, info: RouteInfo, status: int, key: str | None) -> _Answers:
        provider = info.provider or ""
        labels = (info.route or "", provider, self._model(provider, info.model or ""))
        return _Answers(labels, self._requests.cell((endpoint, *labels, str(status), key or "")))

    def _count_attempts(self, route: str, attempts: Sequence[AttemptInfo]) -> None:
        cells = self._attempt_cells
        for attempt in attempts:
            found = (route, attempt.provider, attempt.model, attempt.outcome)
            cell = cells.get(found)
            if cell is None:
                model = self._model(attempt.provider, attempt.model)
                cell = self._attempts.cell((route, attempt.provider, model, attempt.outcome))
                if model == attempt.model:  # as above: `other` models are not kept
                    cells[found] = cell
            cell[0] += 1.0

    def failed(
        self,
        endpoint: str,
        status: int,
        error_type: str,
        *,
        route: str = "",
        provider: str = "",
        model: str = "",
        key: str | None = None,
        attempts: Sequence[AttemptInfo] = (),
    ) -> None:
        """Count a request that ended in an error response."""
        labels = (route, provider, self._model(provider, model) if model else "")
        self._requests.inc((endpoint, *labels, str(status), key or ""))
        self._errors.inc((endpoint, *labels, error_type))
        self._count_attempts(route, attempts)

    def collect(self) -> Iterator[Metric]:
        """The metric families, as prometheus-client's registry asks for them."""
        for series in (self._requests, self._duration, self._ttft, self._tokens, self._cost,
                       self._cache, self._attempts, self._errors):  # fmt: skip
            yield series.family()
        in_flight = GaugeMetricFamily(
            "llmroute_requests_in_flight", "Requests and streams being answered"
        )
        in_flight.add_metric([], self.in_flight)
        yield in_flight

    def exposition(self) -> bytes:
        """Every series in the Prometheus text format."""
        return generate_latest(self.registry)
