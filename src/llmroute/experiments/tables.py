"""An `ExperimentReport` as tables and sentences (``llmroute experiments report``) or JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from .._text import printable
from ..observe.feedback import ExperimentStop
from ..observe.report import Table
from .report import Comparison, ExperimentReport, VariantFigures

__all__ = ["report_json", "report_lines", "report_tables", "stop_sentence"]


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.4g}"


def _tokens(figures: VariantFigures) -> str:
    if figures.input_tokens is None:
        return "-"
    return f"{figures.input_tokens:,.0f}/{figures.output_tokens or 0:,.0f}"


def _figure_cells(figures: VariantFigures) -> list[str]:
    errors = "-" if figures.error_rate is None else f"{figures.errors} ({figures.error_rate:.1%})"
    return [
        printable(figures.variant), f"{figures.requests:,}", errors, _ms(figures.latency_p50),
        _ms(figures.latency_p95), _ms(figures.ttft_p50), _tokens(figures),
        _usd(figures.cost_per_request),
    ]  # fmt: skip


_FIGURE_HEADERS = ["variant", "requests", "errors", "p50", "p95", "TTFT p50",
                   "tokens in/out", "cost/request"]  # fmt: skip


def _variants_tables(report: ExperimentReport) -> list[Table]:
    """The figures, the feedback metrics (if any), and the requests counted apart."""
    title = f"Experiment {printable(report.experiment)}: variants"
    if report.include_off_variant:
        title += " (off-variant requests included)"
    tables = [(title, _FIGURE_HEADERS, [_figure_cells(v) for v in report.variants])]
    metrics = sorted({m.label for v in report.variants for m in v.feedback})
    if metrics:
        rows = []
        for figures in report.variants:
            by_label = {m.label: m for m in figures.feedback}
            rows.append([printable(figures.variant)] + [
                "-" if (m := by_label.get(label)) is None
                else f"{m.mean:.1%} (n={m.n:,})" if m.kind == "boolean"
                else f"{m.mean:.3g} (n={m.n:,})"
                for label in metrics
            ])  # fmt: skip
        tables.append(("Feedback: mean (n)", ["variant", *map(printable, metrics)], rows))
    counted = [
        [printable(v.variant), *(f"{c:,}" for c in (v.unkeyed, v.forced, v.shadow, v.off_variant))]
        for v in report.variants
    ]
    headers = ["variant", "unkeyed (compared)", "forced", "shadow", "off-variant"]
    tables.append(("Counted apart", headers, counted))
    return tables


def _interval(comparison: Comparison) -> tuple[str, str]:
    interval = comparison.interval
    if interval is None:
        return "-", "-"
    if interval.kind == "ratio":
        return (
            f"{(interval.estimate - 1) * 100:+.1f}%",
            f"{(interval.low - 1) * 100:+.1f}% .. {(interval.high - 1) * 100:+.1f}%",
        )
    if comparison.method == "newcombe":
        return (
            f"{interval.estimate * 100:+.2f} pt",
            f"{interval.low * 100:+.2f} .. {interval.high * 100:+.2f} pt",
        )
    return f"{interval.estimate:+.4g}", f"{interval.low:+.4g} .. {interval.high:+.4g}"


def _comparisons_table(report: ExperimentReport) -> Table:
    level = f"{report.interval_confidence * 100:.4g}% CI"
    rows = []
    for c in report.comparisons:
        estimate, span = _interval(c)
        detected = "-" if c.interval is None else "yes" if c.interval.detected else "no"
        more = "-" if c.more_requests is None else f"{c.more_requests:,}"
        rows.append([
            printable(c.variant), printable(c.metric), f"{c.candidate_n:,}/{c.control_n:,}",
            estimate, span, detected, more, c.method,
        ])  # fmt: skip
    headers = ["candidate", "metric", "n (vs control)", "difference", level, "detected",
               "more/variant", "method"]  # fmt: skip
    return "Against control", headers, rows


def report_tables(report: ExperimentReport) -> list[Table]:
    """The variants' figures, feedback and counts, the shadow copies' figures (if any), and
    the comparisons."""
    tables = _variants_tables(report)
    if report.shadows:
        rows = [_figure_cells(s) for s in report.shadows]
        tables.append(("Shadow copies (not compared)", _FIGURE_HEADERS, rows))
    if report.comparisons:
        tables.append(_comparisons_table(report))
    return tables


def report_lines(report: ExperimentReport) -> list[str]:
    """What the comparisons mean, one sentence each, and how the intervals were corrected."""
    lines = [printable(sentence) + "." for sentence in report.sentences]
    if report.stopped is not None:
        lines.insert(0, stop_sentence(report.stopped))
    candidates = len({c.variant for c in report.comparisons})
    if candidates > 1:
        lines.append(
            f"Each interval is at {report.interval_confidence * 100:.4g}% so that the "
            f"{candidates} candidates' intervals of a metric hold together at "
            f"{report.confidence * 100:.4g}% (Bonferroni)."
        )
    elif not report.comparisons:
        lines.append("Nothing to compare: the report needs requests of control and of another "
                     "variant.")  # fmt: skip
    return lines


def stop_sentence(stop: ExperimentStop) -> str:
    """When and why an adaptive experiment stopped, in one sentence."""
    when = datetime.fromtimestamp(stop.stopped_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    samples = ", ".join(f"{variant} {n:,}" for variant, n in stop.samples.items())
    return printable(
        f"Stopped at {when}: {stop.winner} is the best variant on {stop.metric} with "
        f"probability {stop.probability * 100:.1f}% (feedback values: {samples}); every "
        f"request since gets {stop.winner} (assignment winner)."
    )


def report_json(report: ExperimentReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.to_dict(), indent=2)
