"""A `StatsReport` as tables (for ``llmroute stats``) or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from .._text import printable
from .analytics import StatsReport, StatsRow
from .sinks import path_from_url

__all__ = ["Table", "report_json", "report_tables", "store_path"]

#: A table to draw: title, headers, rows.
Table = tuple[str, list[str], list[list[str]]]


def store_path(value: str) -> Path:
    """A store given as a path or a ``sqlite:///`` URL."""
    return path_from_url(value, "sqlite") if value.startswith("sqlite:") else Path(value)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def _count(value: int) -> str:
    return f"{value:,}"


def _usd(row: StatsRow) -> str:
    if row.cost_unknown == row.requests and row.requests:
        return "unknown"
    text = f"${row.cost_usd:,.4f}" if row.cost_usd < 100 else f"${row.cost_usd:,.2f}"
    return text + (f" (+{row.cost_unknown} unknown)" if row.cost_unknown else "")


def _cells(row: StatsRow) -> list[str]:
    errors = f"{row.errors} ({row.error_rate:.1%})" if row.errors else "0"
    lat, ttft = row.latency, row.ttft
    tokens = f"{_count(row.input_tokens)}/{_count(row.output_tokens)}"
    if row.cache_read_tokens:
        tokens += f"\n({_count(row.cache_read_tokens)} cached)"
    hits = "-" if row.cache_hit_rate is None else f"{row.cache_hit_rate:.0%}"
    return [
        _count(row.requests), errors, _ms(lat.p50), _ms(lat.p90), _ms(lat.p95), _ms(lat.p99),
        f"{_ms(ttft.p50)}/{_ms(ttft.p95)}" if ttft.p50 is not None else "-",
        tokens, _usd(row), hits,
    ]  # fmt: skip


_HEADERS = ["requests", "errors", "p50", "p90", "p95", "p99", "TTFT p50/p95",
            "tokens in/out", "cost", "cache hits"]  # fmt: skip


def report_tables(report: StatsReport) -> list[Table]:
    """The report as tables: the groups with a total line, then attempt errors by provider."""
    title = "Requests" + (f" by {', '.join(report.by)}" if report.by else "")
    headers = [*report.by, *_HEADERS]
    # stored values came from clients and providers: escaped, never interpreted
    rows = [
        [printable(str(v)) if v is not None else "-" for v in r.group.values()] + _cells(r)
        for r in report.rows
    ]
    if report.by:
        rows.append(["total", *[""] * (len(report.by) - 1), *_cells(report.total)])
    else:
        rows.append(_cells(report.total))
    tables: list[Table] = [(title, headers, rows)]
    if report.errors:
        tables.append(
            (
                "Failed attempts by provider",
                ["provider", "error type", "count", "share of its attempts"],
                [
                    [
                        printable(e.provider),
                        printable(e.error_type),
                        _count(e.count),
                        f"{e.rate:.1%} of {e.attempts}",
                    ]
                    for e in report.errors
                ],
            )
        )
    return tables


def report_json(report: StatsReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.to_dict(), indent=2)
