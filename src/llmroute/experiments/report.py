"""An experiment's report: each variant's figures, and each candidate against control.

`query_report` reads the log store: the experiment's request records, and
the feedback on them (per request, and per sticky key). `build_report` does
the rest without I/O. The SQL is plain standard SQL (no SQLite functions) so
that another store's connection can run the same queries.

Which requests are compared: those of the experiment assigned by their sticky
key, per request (no sticky key: counted as ``unkeyed`` too) or as the
winner of an adaptive experiment, and served by a target of their variant.
Requests with a forced variant, shadow copies and (unless
``include_off_variant``) requests that failed over to a target outside their
variant are counted apart; the shadow copies' own figures are shown beside
each variant, without a comparison. docs/experiments.md says what each
interval is and what the sentences mean.
"""

from __future__ import annotations

import math
import statistics
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from .._errors import ConfigError
from ..observe.analytics import parse_time, percentile
from ..observe.feedback import ExperimentStop, FeedbackKind
from .sentences import describe
from .stats import (
    Interval,
    Summary,
    bonferroni,
    mean_ratio_interval,
    median_ratio_interval,
    newcombe_interval,
    sample_size,
    welch_interval,
)

if TYPE_CHECKING:
    from ..observe.dialect import LogStore

__all__ = [
    "CONTROL",
    "Comparison",
    "ExperimentReport",
    "MetricFigure",
    "ReportRow",
    "VariantFigures",
    "build_report",
    "query_report",
]

#: The variant every other one is compared with: the route as configured.
CONTROL = "control"
#: The assignments whose requests are compared (None: a record written before they were).
_COMPARED = frozenset({"sticky", "unkeyed", "winner", None})
#: The power at which the report says how many requests a difference needs.
POWER = 0.8

#: The built-in metrics, compared for every candidate, in this order.
MetricName = Literal[
    "error_rate", "latency_p50", "ttft_p50", "cost_per_request", "tokens_per_request"
]


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One request record, as much of it as the report reads."""

    request_id: str
    variant: str
    assignment: str | None
    off_variant: bool
    sticky_key: str | None
    status: str
    latency_s: float | None
    ttft_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class MetricFigure:
    """A feedback metric of one variant.

    Attributes:
        name: the metric.
        per: ``request`` for feedback on requests, ``sticky_key`` for feedback
            on the experiment's sticky keys (a user, a session).
        kind: ``boolean`` (the mean is a rate) or ``number``.
        n: the requests (or sticky keys) with a value; the latest value of each
            counts.
        mean: the mean value.
    """

    name: str
    per: Literal["request", "sticky_key"]
    kind: FeedbackKind
    n: int
    mean: float

    @property
    def label(self) -> str:
        """The metric's name in tables and sentences."""
        return self.name if self.per == "request" else f"{self.name} (per sticky key)"


@dataclass(frozen=True, slots=True)
class VariantFigures:
    """One variant's figures over its compared requests (or its shadow copies).

    Attributes:
        variant: the variant's name.
        requests: requests compared (for shadow figures: shadow copies).
        errors, error_rate: those that ended with an error, and their share.
        latency_p50, latency_p95: whole-request latency of those that
            succeeded, in seconds.
        ttft_p50: time to first token of the streams that succeeded.
        input_tokens, output_tokens: mean tokens per request, where known.
        cost_per_request: mean cost in USD, where known (`cost_unknown`: not).
        feedback: each feedback metric's mean and n.
        unkeyed: compared requests assigned per request (no sticky key).
        forced: requests forced to this variant (not compared).
        shadow: shadow copies sent to this variant (not compared).
        off_variant: requests that failed over outside the variant (compared
            only with ``include_off_variant``).
    """

    variant: str
    requests: int = 0
    errors: int = 0
    error_rate: float | None = None
    latency_p50: float | None = None
    latency_p95: float | None = None
    ttft_p50: float | None = None
    input_tokens: float | None = None
    output_tokens: float | None = None
    cost_per_request: float | None = None
    cost_unknown: int = 0
    feedback: tuple[MetricFigure, ...] = ()
    unkeyed: int = 0
    forced: int = 0
    shadow: int = 0
    off_variant: int = 0


@dataclass(frozen=True, slots=True)
class Comparison:
    """A candidate variant against control on one metric.

    Attributes:
        variant: the candidate.
        metric: ``error_rate``, ``latency_p50``, ``ttft_p50``,
            ``cost_per_request``, ``tokens_per_request``, or a feedback metric's
            label.
        method: ``newcombe`` (a difference of proportions), ``welch`` (of
            means), ``delta_log_ratio`` (a ratio of means) or
            ``bootstrap_median_ratio`` (a ratio of medians).
        interval: the estimate and its interval (None: too little data).
        control_n, candidate_n: the values each side had.
        control_value, candidate_value: the compared statistic on each side
            (a rate, mean or median).
        more_requests: requests per variant still needed to detect the
            observed difference with 80% power (None when detected, or when
            there is no difference or no spread to scale).
        sentence: what it means, in one plain sentence.
    """

    variant: str
    metric: str
    method: str
    interval: Interval | None
    control_n: int
    candidate_n: int
    control_value: float | None
    candidate_value: float | None
    more_requests: int | None
    sentence: str


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """What `AsyncRouter.experiment_report` found.

    Attributes:
        experiment: the experiment's name.
        since, until: the requests' start window (Unix seconds; None: open).
        include_off_variant: whether off-variant requests were compared.
        confidence: the level all of a metric's intervals hold at together.
        interval_confidence: each interval's own level: `confidence`,
            corrected (Bonferroni) when several candidates face control.
        variants: control first, then the candidates by name.
        shadows: each variant's shadow copies' figures (not compared).
        comparisons: each candidate against control, metric by metric.
        stopped: when, why and for which winner an adaptive experiment stopped
            (None: it has not, or it is not adaptive).
    """

    experiment: str
    since: float | None
    until: float | None
    include_off_variant: bool
    confidence: float
    interval_confidence: float
    variants: tuple[VariantFigures, ...]
    shadows: tuple[VariantFigures, ...] = ()
    comparisons: tuple[Comparison, ...] = field(default=())
    stopped: ExperimentStop | None = None

    @property
    def sentences(self) -> list[str]:
        """Every comparison's sentence, candidate by candidate."""
        return [c.sentence for c in self.comparisons]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (a value that is not a finite number is None)."""
        data: dict[str, Any] = _finite(asdict(self))
        data["sentences"] = self.sentences
        return data


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# ---------------------------------------------------------------- reading the store


def _window(since: float | None, until: float | None) -> tuple[str, list[Any]]:
    clauses, params = "", []
    if since is not None:
        clauses += " AND r.started_at >= ?"
        params.append(since)
    if until is not None:
        clauses += " AND r.started_at < ?"
        params.append(until)
    return clauses, params


_ROW_COLUMNS = (
    "r.request_id, r.variant, r.assignment, r.off_variant, r.sticky_key, r.status, "
    "r.latency_s, r.ttft_s, r.input_tokens, r.output_tokens, r.cost_usd"
)
#: (subject, name, value, kind): feedback on the experiment's requests, oldest first.
_REQUEST_FEEDBACK = (
    "SELECT f.request_id, f.name, f.value, f.kind FROM feedback f "
    "JOIN requests r ON r.request_id = f.request_id WHERE r.experiment = ?{window} "
    "ORDER BY f.created_at, f.feedback_id"
)
_STICKY_FEEDBACK = (
    "SELECT f.sticky_key, f.name, f.value, f.kind FROM feedback f "
    "WHERE f.experiment = ? AND f.sticky_key IS NOT NULL ORDER BY f.created_at, f.feedback_id"
)

_Feedback = tuple[str, str, float, str]


def query_report(
    store: LogStore | None,
    name: str,
    *,
    since: float | datetime | str | None = None,
    until: float | datetime | str | None = None,
    include_off_variant: bool = False,
) -> ExperimentReport:
    """Experiment `name`'s report, read from `store` (blocking)."""
    if store is None:
        raise ConfigError(
            "the experiment report reads the log store, and this router has none: set "
            "`logging.store` (for example sqlite:///llmroute.db)",
            path="logging.store",
        )
    start = None if since is None else parse_time(since)
    end = None if until is None else parse_time(until)
    window, window_params = _window(start, end)
    rows_sql = (
        f"SELECT {_ROW_COLUMNS} FROM requests r "  # noqa: S608 (fixed text, bound values)
        f"WHERE r.experiment = ? AND r.status <> 'started'{window}"
    )
    with store.connect(read_only=True) as conn:
        rows = [_row(values) for values in conn.execute(rows_sql, [name, *window_params])]
        on_requests: list[_Feedback] = list(
            conn.execute(_REQUEST_FEEDBACK.format(window=window), [name, *window_params])
        )
        on_keys: list[_Feedback] = list(conn.execute(_STICKY_FEEDBACK, [name]))
    report = build_report(
        name, rows, on_requests, on_keys,
        since=start, until=end, include_off_variant=include_off_variant,
    )  # fmt: skip
    stopped = store.experiment_stop(name)
    return report if stopped is None else replace(report, stopped=stopped)


def _row(values: Sequence[Any]) -> ReportRow:
    fields: list[Any] = list(values)
    fields[3] = bool(fields[3])  # off_variant: an INTEGER in the store
    return ReportRow(*fields)


# ---------------------------------------------------------------- building


@dataclass(slots=True)
class _Values:
    """The values one variant's figures and comparisons are made of."""

    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    inputs: list[float] = field(default_factory=list)
    outputs: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    unkeyed: int = 0
    forced: int = 0
    shadow: int = 0
    off_variant: int = 0
    metrics: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, row: ReportRow) -> None:
        self.requests += 1
        self.errors += row.status == "error"
        self.unkeyed += row.assignment == "unkeyed"
        if row.status == "ok":
            if row.latency_s is not None:
                self.latencies.append(row.latency_s)
            if row.ttft_s is not None:
                self.ttfts.append(row.ttft_s)
        if row.cost_usd is not None:
            self.costs.append(row.cost_usd)
        if row.input_tokens is not None:
            self.inputs.append(row.input_tokens)
            self.outputs.append(row.output_tokens or 0)
            self.tokens.append(row.input_tokens + (row.output_tokens or 0))

    def figures(self, variant: str, kinds: dict[tuple[str, str], FeedbackKind]) -> VariantFigures:
        latencies = sorted(self.latencies)
        return VariantFigures(
            variant=variant,
            requests=self.requests,
            errors=self.errors,
            error_rate=self.errors / self.requests if self.requests else None,
            latency_p50=percentile(latencies, 50),
            latency_p95=percentile(latencies, 95),
            ttft_p50=percentile(sorted(self.ttfts), 50),
            input_tokens=_mean(self.inputs),
            output_tokens=_mean(self.outputs),
            cost_per_request=_mean(self.costs),
            cost_unknown=self.requests - len(self.costs),
            feedback=tuple(
                MetricFigure(name, per, kinds[name, per], len(values), statistics.fmean(values))  # type: ignore[arg-type]
                for (name, per), values in sorted(self.metrics.items())
                if values
            ),
            unkeyed=self.unkeyed,
            forced=self.forced,
            shadow=self.shadow,
            off_variant=self.off_variant,
        )


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _latest(feedback: Iterable[_Feedback]) -> dict[tuple[str, str], tuple[float, str]]:
    """The latest value and kind per (subject, metric): feedback given again replaces."""
    latest: dict[tuple[str, str], tuple[float, str]] = {}
    for subject, name, value, kind in feedback:
        latest[subject, name] = (value, kind)
    return latest


def build_report(
    experiment: str,
    rows: Iterable[ReportRow],
    on_requests: Iterable[_Feedback] = (),
    on_keys: Iterable[_Feedback] = (),
    *,
    since: float | None = None,
    until: float | None = None,
    include_off_variant: bool = False,
    confidence: float = 0.95,
) -> ExperimentReport:
    """The report from the experiment's records and feedback, oldest first (no I/O)."""
    compared: dict[str, _Values] = defaultdict(_Values)
    shadows: dict[str, _Values] = defaultdict(_Values)
    variant_of: dict[str, str] = {}
    key_variants: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        values = compared[row.variant]
        if row.assignment == "shadow":
            values.shadow += 1
            shadows[row.variant].add(row)
        elif row.assignment == "forced":
            values.forced += 1
        elif row.assignment in _COMPARED:
            values.off_variant += row.off_variant
            if include_off_variant or not row.off_variant:
                values.add(row)
                variant_of[row.request_id] = row.variant
                if row.sticky_key is not None:
                    key_variants[row.sticky_key].add(row.variant)
    kinds = _collect_feedback(compared, variant_of, key_variants, on_requests, on_keys)
    names = sorted(compared, key=lambda v: (v != CONTROL, v))
    candidates = [v for v in names if v != CONTROL and compared[v].requests]
    level = bonferroni(confidence, len(candidates)) if candidates else confidence
    comparisons: list[Comparison] = []
    if CONTROL in compared and compared[CONTROL].requests:
        for variant in candidates:
            comparisons += _compare(
                experiment, variant, compared[CONTROL], compared[variant], kinds, level
            )
    return ExperimentReport(
        experiment=experiment,
        since=since,
        until=until,
        include_off_variant=include_off_variant,
        confidence=confidence,
        interval_confidence=level,
        variants=tuple(compared[v].figures(v, kinds) for v in names),
        shadows=tuple(shadows[v].figures(v, kinds) for v in sorted(shadows)),
        comparisons=tuple(comparisons),
    )


def _collect_feedback(
    compared: dict[str, _Values],
    variant_of: dict[str, str],
    key_variants: dict[str, set[str]],
    on_requests: Iterable[_Feedback],
    on_keys: Iterable[_Feedback],
) -> dict[tuple[str, str], FeedbackKind]:
    """Give each variant the latest feedback values of its compared requests, and of its
    sticky keys (a key whose requests were in several variants counts for none); return
    each metric's kind (boolean only when every value given was)."""
    kinds: dict[tuple[str, str], FeedbackKind] = {}

    def attribute(per: str, latest: dict[tuple[str, str], tuple[float, str]],
                  owner: Callable[[str], str | None]) -> None:  # fmt: skip
        for (subject, name), (value, kind) in latest.items():
            variant = owner(subject)
            if variant is None:
                continue
            known = kinds.get((name, per))
            kinds[name, per] = "boolean" if kind == "boolean" and known != "number" else "number"
            compared[variant].metrics.setdefault((name, per), []).append(value)

    attribute("request", _latest(on_requests), variant_of.get)
    attribute("sticky_key", _latest(on_keys), lambda key: _only(key_variants.get(key)))
    return kinds


def _only(variants: set[str] | None) -> str | None:
    return next(iter(variants)) if variants is not None and len(variants) == 1 else None


# ---------------------------------------------------------------- comparing


def _seed(*parts: str) -> int:
    """A bootstrap seed of its own for each comparison, the same in every report."""
    return zlib.crc32("\x00".join(parts).encode())


def _compare(
    experiment: str,
    variant: str,
    control: _Values,
    candidate: _Values,
    kinds: dict[tuple[str, str], FeedbackKind],
    level: float,
) -> list[Comparison]:
    out = [
        _proportions(variant, "error_rate", (control.errors, control.requests),
                     (candidate.errors, candidate.requests), level),
        _medians(experiment, variant, "latency_p50", control.latencies, candidate.latencies,
                 level),
        _medians(experiment, variant, "ttft_p50", control.ttfts, candidate.ttfts, level),
        _means_ratio(variant, "cost_per_request", control.costs, candidate.costs, level),
        _means_ratio(variant, "tokens_per_request", control.tokens, candidate.tokens, level),
    ]  # fmt: skip
    if not control.ttfts and not candidate.ttfts:
        out.pop(2)  # no streams: nothing to say about the first token
    for name, per in sorted(kinds):
        a = control.metrics.get((name, per), [])
        b = candidate.metrics.get((name, per), [])
        label = MetricFigure(name, per, kinds[name, per], 0, 0.0).label  # type: ignore[arg-type]
        if kinds[name, per] == "boolean":
            counts_a = (round(sum(a)), len(a))
            counts_b = (round(sum(b)), len(b))
            out.append(_proportions(variant, label, counts_a, counts_b, level))
        else:
            out.append(_means(variant, label, a, b, level))
    return out


def _finish(
    variant: str,
    metric: str,
    method: str,
    interval: Interval | None,
    sizes: tuple[int, int],
    values: tuple[float | None, float | None],
    *,
    rate: bool = False,
) -> Comparison:
    more = None
    if interval is not None and not interval.detected and min(sizes) > 0:
        effect = interval.estimate - interval.null
        n = 2 / (1 / sizes[0] + 1 / sizes[1])  # the harmonic mean: se scales with it
        needed = sample_size(interval, n, effect, power=POWER)
        if needed is not None:
            more = max(1, int(needed) + 1 - min(sizes))
    sentence = describe(variant, metric, interval, sizes, values, more, rate=rate)
    return Comparison(
        variant, metric, method, interval, sizes[0], sizes[1], values[0], values[1], more,
        sentence,
    )  # fmt: skip


def _proportions(
    variant: str,
    metric: str,
    control: tuple[int, int],
    candidate: tuple[int, int],
    level: float,
) -> Comparison:
    interval = newcombe_interval(control, candidate, level)
    rates = (_rate(*control), _rate(*candidate))
    sizes = (control[1], candidate[1])
    return _finish(variant, metric, "newcombe", interval, sizes, rates, rate=True)


def _rate(successes: int, n: int) -> float | None:
    return successes / n if n else None


def _means(
    variant: str, metric: str, control: list[float], candidate: list[float], level: float
) -> Comparison:
    interval = welch_interval(Summary.of(control), Summary.of(candidate), level)
    means = (_mean(control), _mean(candidate))
    sizes = (len(control), len(candidate))
    return _finish(variant, metric, "welch", interval, sizes, means)


def _means_ratio(
    variant: str, metric: str, control: list[float], candidate: list[float], level: float
) -> Comparison:
    interval = mean_ratio_interval(Summary.of(control), Summary.of(candidate), level)
    means = (_mean(control), _mean(candidate))
    return _finish(
        variant, metric, "delta_log_ratio", interval, (len(control), len(candidate)), means
    )


def _medians(
    experiment: str,
    variant: str,
    metric: str,
    control: list[float],
    candidate: list[float],
    level: float,
) -> Comparison:
    interval = median_ratio_interval(
        control, candidate, level, seed=_seed(experiment, variant, metric)
    )
    medians = (_median(control), _median(candidate))
    sizes = (len(control), len(candidate))
    return _finish(variant, metric, "bootstrap_median_ratio", interval, sizes, medians)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None
