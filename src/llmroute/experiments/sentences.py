"""The report's plain sentences: one per candidate and metric, saying what the interval says.

A detected difference (the interval leaves out "no difference") is said as
the estimate with its interval, both as sizes in the direction found:
"candidate costs 23% less per request ($0.0021 vs $0.0027; 95% CI 18% to
28%)". Otherwise the sentence says so, with the interval, and how many
more requests per variant would detect a difference the size of the one
observed, at 80% power: "candidate shows no detectable difference in
thumbs_up at n = 4,210 vs 4,190 (95% CI -1.1 to +3.2 points); 2,300 more
requests per variant would detect a difference of 2.1 points".
"""

from __future__ import annotations

from .stats import Interval

__all__ = ["describe"]

#: Ratio metrics: (what less of it is, what more of it is, its name).
_RATIOS = {
    "cost_per_request": ("costs {} less per request", "costs {} more per request",
                         "cost per request"),
    "tokens_per_request": ("uses {} fewer tokens per request", "uses {} more tokens per request",
                           "tokens per request"),
    "latency_p50": ("answers with a {} lower median latency",
                    "answers with a {} higher median latency", "median latency"),
    "ttft_p50": ("has a {} lower median time to first token",
                 "has a {} higher median time to first token", "median time to first token"),
}  # fmt: skip
#: What the other built-in metric is called in a sentence.
_LABELS = {"error_rate": "error rate", **{metric: words[2] for metric, words in _RATIOS.items()}}


def _figure(x: float) -> str:
    """A magnitude with as many digits as it needs: 23, 4.3, 0.57, 1,250."""
    x = abs(x)
    if x >= 10 or x == 0:
        return f"{x:,.0f}"
    text = f"{x:.1f}" if x >= 1 else f"{x:.2g}"
    return text.removesuffix(".0")


def _signed(x: float) -> str:
    return ("+" if x > 0 else "-" if x < 0 else "") + _figure(x)


def _level(interval: Interval) -> str:
    return f"{interval.confidence * 100:.4g}% CI"


def _value(metric: str, value: float | None) -> str:
    """A side's statistic, in the metric's unit."""
    if value is None:
        return "-"
    if metric == "cost_per_request":
        return f"${value:.3g}"
    if metric in ("latency_p50", "ttft_p50"):
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    if metric == "tokens_per_request":
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _ratio(
    variant: str, metric: str, interval: Interval, values: tuple[float | None, float | None]
) -> str:
    less, more, _ = _RATIOS[metric]
    change = interval.estimate - 1.0
    # the interval's ends as changes of the same direction, nearest first
    ends = sorted(abs(x - 1.0) for x in (interval.low, interval.high))
    phrase = (less if change < 0 else more).format(f"{_figure(change * 100)}%")
    span = f"{_figure(ends[0] * 100)}% to {_figure(ends[1] * 100)}%"
    sides = f"{_value(metric, values[1])} vs {_value(metric, values[0])}"
    return f"{variant} {phrase} ({sides}; {_level(interval)} {span})"


def _undetected(
    variant: str,
    metric: str,
    interval: Interval,
    sizes: tuple[int, int],
    more: int | None,
    *,
    rate: bool,
) -> str:
    label = _LABELS.get(metric, metric)
    if interval.kind == "ratio":
        span = f"{_signed((interval.low - 1) * 100)}% to {_signed((interval.high - 1) * 100)}%"
        effect = f"{_figure((interval.estimate - 1) * 100)}%"
    elif rate:
        span = f"{_signed(interval.low * 100)} to {_signed(interval.high * 100)} points"
        effect = f"{_figure(interval.estimate * 100)} points"
    else:
        span = f"{_signed(interval.low)} to {_signed(interval.high)}"
        effect = _figure(interval.estimate)
    text = (
        f"{variant} shows no detectable difference in {label} at n = {sizes[1]:,} vs "
        f"{sizes[0]:,} ({_level(interval)} {span})"
    )
    if more is not None:
        text += f"; {more:,} more requests per variant would detect a difference of {effect}"
    return text


def describe(
    variant: str,
    metric: str,
    interval: Interval | None,
    sizes: tuple[int, int],
    values: tuple[float | None, float | None],
    more: int | None,
    *,
    rate: bool,
) -> str:
    """The sentence for `variant` against control on `metric`.

    `sizes` and `values` are (control, candidate): the number of values and the
    compared statistic; `rate`: the metric is a proportion (said in points).
    """
    label = _LABELS.get(metric, metric)
    if interval is None:
        return (
            f"{variant} cannot be compared with control on {label} yet (n = {sizes[1]:,} vs "
            f"{sizes[0]:,}: too few values, or none that vary)"
        )
    if not interval.detected:
        return _undetected(variant, metric, interval, sizes, more, rate=rate)
    if interval.kind == "ratio":
        return _ratio(variant, metric, interval, values)
    return (
        _rated(variant, metric, interval, values)
        if rate
        else _mean_difference(variant, metric, interval, values)
    )


def _rated(
    variant: str, metric: str, interval: Interval, values: tuple[float | None, float | None]
) -> str:
    subject = "error rate" if metric == "error_rate" else f"{metric} rate"
    direction = "higher" if interval.estimate > 0 else "lower"
    sides = " vs ".join(f"{v:.1%}" if v is not None else "-" for v in values[::-1])
    near, far = sorted(abs(x) for x in (interval.low, interval.high))
    span = f"{_figure(near * 100)} to {_figure(far * 100)} points"
    size = f"{_figure(interval.estimate * 100)} points"
    return f"{variant}'s {subject} is {size} {direction} ({sides}; {_level(interval)} {span})"


def _mean_difference(
    variant: str, metric: str, interval: Interval, values: tuple[float | None, float | None]
) -> str:
    direction = "higher" if interval.estimate > 0 else "lower"
    sides = " vs ".join(_value(metric, v) for v in values[::-1])
    near, far = sorted(abs(x) for x in (interval.low, interval.high))
    span = f"{_figure(near)} to {_figure(far)}"
    size = _figure(interval.estimate)
    return f"{variant}'s mean {metric} is {size} {direction} ({sides}; {_level(interval)} {span})"
