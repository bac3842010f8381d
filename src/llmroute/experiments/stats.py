"""The statistics of an experiment's report: intervals for a difference, and sample sizes.

Pure functions over counts, summaries and values; no numpy or scipy at run
time (the tests check every function against scipy and statsmodels).

Each interval compares a candidate variant with the control, candidate
minus control (or candidate over control, for a ratio):

- `welch_interval`: the difference of two means, with Welch's t (no
  assumption that the variances are equal), for numeric feedback.
- `newcombe_interval`: the difference of two proportions, Newcombe's hybrid
  score interval built from the two Wilson intervals (his method 10), for
  error rates and boolean feedback. Unlike the textbook Wald interval it keeps
  its coverage near 0 and 1 and with small counts.
- `mean_ratio_interval`: the ratio of two means (cost or tokens per request:
  what the total spend scales by), by the delta method on the log of the ratio
  with Welch's degrees of freedom (Deng, Knoblich and Lu, 2018).
- `median_ratio_interval`: the ratio of two medians (latency, time to first
  token: skewed, with long tails), by a seeded percentile bootstrap.

`bonferroni` widens the confidence level when several candidates are compared
with one control; `sample_size` says how many requests per variant a
difference needs to be detected at a given power.

The inverse of Student's t distribution (`t_ppf`) is computed here from the
regularized incomplete beta function (a continued fraction), solved by Newton
steps kept inside a bracket: accurate to about 1e-12 against scipy.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Interval",
    "Summary",
    "bonferroni",
    "bootstrap_medians",
    "median_ratio_interval",
    "mean_ratio_interval",
    "newcombe_interval",
    "normal_ppf",
    "sample_size",
    "t_ppf",
    "welch_interval",
    "wilson_interval",
]

_NORMAL = statistics.NormalDist()
#: From this many degrees of freedom on, `t_ppf` uses the expansion of the t quantile in
#: powers of 1/df (its error, of order df**-5, is below double precision there), where
#: the incomplete beta fraction would converge slowly and lose digits.
_EXPANSION_DF = 1e5


@dataclass(frozen=True, slots=True)
class Summary:
    """The size, mean and sample variance (n - 1 in the denominator) of some values."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """The summary of `values` (the variance is 0 for fewer than two)."""
        n = len(values)
        if n == 0:
            return cls(0, math.nan, math.nan)
        mean = math.fsum(values) / n
        variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
        return cls(n, mean, variance)


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimate and its confidence interval.

    Attributes:
        estimate: the candidate minus the control (a difference), or the
            candidate over the control (a ratio).
        low, high: the interval's ends.
        confidence: its level (0.95; higher when corrected for several
            comparisons).
        kind: ``difference`` or ``ratio``.
        se: the standard error behind it (of the log of a ratio), which
            `sample_size` scales.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    kind: str = "difference"
    se: float = math.nan

    @property
    def null(self) -> float:
        """The value meaning "no difference": 0 for a difference, 1 for a ratio."""
        return 1.0 if self.kind == "ratio" else 0.0

    @property
    def detected(self) -> bool:
        """Whether the interval leaves out "no difference"."""
        return not self.low <= self.null <= self.high


# ---------------------------------------------------------------- distributions


def normal_ppf(p: float) -> float:
    """The standard normal quantile of `p` (Wichura's AS 241, as `statistics.NormalDist`)."""
    return _NORMAL.inv_cdf(p)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-16:
            return h
    raise ArithmeticError(f"the incomplete beta fraction did not converge (a={a}, b={b}, x={x})")


def _lgamma_step(a: float, b: float) -> float:
    """log(Gamma(a + b) / Gamma(a)): for a large a from Stirling's series, where the
    difference of two `math.lgamma` values would lose digits to cancellation."""
    if a < 100:
        return math.lgamma(a + b) - math.lgamma(a)
    c = a + b

    def series(x: float) -> float:
        x2 = x * x
        return (1.0 / 12.0 - (1.0 / 360.0 - 1.0 / (1260.0 * x2)) / x2) / x

    return (a - 0.5) * math.log1p(b / a) + b * math.log(c) - b + series(c) - series(a)


def _beta_inc(a: float, b: float, x: float, y: float) -> float:
    """The regularized incomplete beta function I_x(a, b), with y = 1 - x given exactly."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    # log(x^a y^b / B(a, b)), with a the larger parameter in the Gamma ratio
    big, small = (a, b) if a >= b else (b, a)
    log_x = math.log1p(-y) if x > 0.5 else math.log(x)
    log_y = math.log1p(-x) if y > 0.5 else math.log(y)
    log_front = a * log_x + b * log_y + _lgamma_step(big, small) - math.lgamma(small)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, y) / b


def _t_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0, computed without cancellation far in the tail."""
    t2 = t * t
    return 0.5 * _beta_inc(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))


def _t_pdf(t: float, df: float) -> float:
    log_norm = _lgamma_step(df / 2, 0.5) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))


def t_ppf(p: float, df: float) -> float:
    """The quantile of `p` in Student's t distribution with `df` (> 0, any real) degrees of
    freedom: the t with P(T <= t) = p."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"expected a probability strictly between 0 and 1, got {p}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p == 0.5:
        return 0.0
    if df >= _EXPANSION_DF:
        return _t_expansion(normal_ppf(p), df)
    tail = min(p, 1.0 - p)
    sign = 1.0 if p > 0.5 else -1.0
    if df == 1.0:  # Cauchy
        return sign / math.tan(math.pi * tail)
    if df == 2.0:
        return (2.0 * p - 1.0) / math.sqrt(2.0 * p * (1.0 - p))
    return sign * _t_upper(tail, df)


def _t_expansion(z: float, df: float) -> float:
    """The t quantile from the normal one `z`, in powers of 1/df (Abramowitz and Stegun
    26.7.5), for a large `df`."""
    z2 = z * z
    g1 = (z2 + 1) * z / 4
    g2 = ((5 * z2 + 16) * z2 + 3) * z / 96
    g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384
    g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160
    return z + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df


def _t_upper(tail: float, df: float) -> float:
    """The t > 0 with P(T > t) = `tail` (< 0.5): Newton's method on the log of the tail,
    inside a bracket that bisection keeps when a step would leave it."""
    low, high = 0.0, max(1.0, -normal_ppf(tail))
    while _t_tail(high, df) > tail:
        low, high = high, high * 2.0
    t = min(max(-normal_ppf(tail), low), high)
    target = math.log(tail)
    for _ in range(200):
        got = _t_tail(t, df)
        if got > tail:
            low = t
        else:
            high = t
        # d/dt log P(T > t) = -pdf(t) / P(T > t)
        slope = -_t_pdf(t, df) / got if got > 0 else -math.inf
        step = (math.log(got) - target) / slope if got > 0 and slope < 0 else math.nan
        following = t - step
        if not low < following < high:
            following = (low + high) / 2.0
        if abs(following - t) <= 1e-14 * following or high - low <= 1e-15 * high:
            return following
        t = following
    return t


# ---------------------------------------------------------------- intervals


def _two_sided(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"expected a confidence level between 0 and 1, got {confidence}")
    return 1.0 - (1.0 - confidence) / 2.0


def welch_interval(
    control: Summary, candidate: Summary, confidence: float = 0.95
) -> Interval | None:
    """Welch's t interval for ``candidate.mean - control.mean``; None when either side has
    fewer than two values, or neither varies (no standard error to speak of)."""
    quantile = _two_sided(confidence)
    if control.n < 2 or candidate.n < 2:
        return None
    ua, ub = control.variance / control.n, candidate.variance / candidate.n
    se2 = ua + ub
    if se2 <= 0.0:
        return None
    df = se2 * se2 / (ua * ua / (control.n - 1) + ub * ub / (candidate.n - 1))
    se = math.sqrt(se2)
    half = t_ppf(quantile, df) * se
    estimate = candidate.mean - control.mean
    return Interval(estimate, estimate - half, estimate + half, confidence, "difference", se)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (without continuity correction)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"expected 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = normal_ppf(_two_sided(confidence))
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    control: tuple[int, int], candidate: tuple[int, int], confidence: float = 0.95
) -> Interval | None:
    """Newcombe's hybrid score interval for the difference of two proportions, candidate
    minus control, each given as ``(successes, n)``; None when either n is 0."""
    (s1, n1), (s2, n2) = control, candidate
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = s1 / n1, s2 / n2
    l1, u1 = wilson_interval(s1, n1, confidence)
    l2, u2 = wilson_interval(s2, n2, confidence)
    estimate = p2 - p1
    low = estimate - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = estimate + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    # the unpooled standard error at the observed rates (what `sample_size` scales)
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return Interval(estimate, low, high, confidence, "difference", se)


def mean_ratio_interval(
    control: Summary, candidate: Summary, confidence: float = 0.95
) -> Interval | None:
    """``candidate.mean / control.mean`` with an interval from the delta method on its log;
    None when a side has fewer than two values or a mean that is not positive."""
    quantile = _two_sided(confidence)
    if control.n < 2 or candidate.n < 2 or control.mean <= 0 or candidate.mean <= 0:
        return None
    ua = control.variance / (control.n * control.mean**2)
    ub = candidate.variance / (candidate.n * candidate.mean**2)
    se2 = ua + ub
    ratio = candidate.mean / control.mean
    if se2 <= 0.0:
        return None
    df = se2 * se2 / (ua * ua / (control.n - 1) + ub * ub / (candidate.n - 1))
    se = math.sqrt(se2)
    half = t_ppf(quantile, df) * se
    log_ratio = math.log(ratio)
    return Interval(
        ratio, math.exp(log_ratio - half), math.exp(log_ratio + half), confidence, "ratio", se
    )


def bootstrap_medians(values: Sequence[float], resamples: int, rng: random.Random) -> list[float]:
    """The medians of `resamples` bootstrap resamples of `values` (each a draw of
    ``len(values)`` values with replacement).

    A resample's k-th smallest value is the value at index floor(n * U), where U
    is the k-th smallest of n uniform draws: U ~ Beta(k, n + 1 - k). Drawing U
    directly gives each resample's median in O(1) instead of O(n log n), with
    exactly the distribution resampling has. For an even n the median also needs
    the next order statistic: U' = U + (1 - U) * Beta(1, n - k).
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("no values to resample")
    if n == 1:
        return [ordered[0]] * resamples
    k = (n + 1) // 2
    last = n - 1
    beta, uniform = rng.betavariate, rng.random
    medians = []
    for _ in range(resamples):
        u = beta(k, n + 1 - k)
        lower = ordered[min(int(n * u), last)]
        if n % 2:
            medians.append(lower)
            continue
        # Beta(1, m) by its inverse distribution function: 1 - (1 - r) ** (1 / m)
        upper_u = u + (1.0 - u) * -math.expm1(math.log1p(-uniform()) / (n - k))
        medians.append((lower + ordered[min(int(n * upper_u), last)]) / 2.0)
    return medians


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The `q` quantile of sorted values, linearly interpolated (numpy's default)."""
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median_ratio_interval(
    control: Sequence[float],
    candidate: Sequence[float],
    confidence: float = 0.95,
    *,
    resamples: int = 10_000,
    seed: int = 0,
) -> Interval | None:
    """``median(candidate) / median(control)`` with a seeded percentile bootstrap interval
    (each side resampled on its own); None when a side is empty or has a median that is
    not positive. The same values and seed give the same interval."""
    quantile = _two_sided(confidence)
    if not control or not candidate:
        return None
    a, b = sorted(control), sorted(candidate)
    median_a, median_b = statistics.median(a), statistics.median(b)
    if median_a <= 0 or median_b <= 0:
        return None
    rng = random.Random(seed)
    draws_a = bootstrap_medians(a, resamples, rng)
    draws_b = bootstrap_medians(b, resamples, rng)
    if min(draws_a) <= 0:
        return None
    ratios = sorted(y / x for x, y in zip(draws_a, draws_b, strict=True))
    logs = [math.log(r) for r in ratios if r > 0]
    se = statistics.stdev(logs) if len(logs) > 1 else math.nan
    return Interval(
        median_b / median_a,
        _quantile(ratios, 1.0 - quantile),
        _quantile(ratios, quantile),
        confidence,
        "ratio",
        se,
    )


# ---------------------------------------------------------------- several comparisons, power


def bonferroni(confidence: float, comparisons: int) -> float:
    """The confidence level of each of `comparisons` intervals so that all of them hold
    together at `confidence` (Bonferroni: the error rate split evenly)."""
    _two_sided(confidence)
    if comparisons < 1:
        raise ValueError(f"expected at least one comparison, got {comparisons}")
    return 1.0 - (1.0 - confidence) / comparisons


def sample_size(interval: Interval, n: float, effect: float, *, power: float = 0.8) -> float | None:
    """The requests per variant at which a difference of `effect` (a ratio's relative
    change, 0.05 for 5%, for a ratio interval) would be detected with probability `power`,
    at the interval's confidence level.

    `interval.se` was measured with `n` requests per variant; the standard error shrinks
    as 1 / sqrt(n), and detection needs ``|effect| >= (z_level + z_power) * se``. None when
    the standard error or the effect is unknown or zero.
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"expected a power between 0 and 1, got {power}")
    size = math.log1p(effect) if interval.kind == "ratio" and effect > -1 else effect
    se = interval.se
    if not (se > 0 and math.isfinite(se) and size != 0 and math.isfinite(size) and n > 0):
        return None
    z = normal_ppf(_two_sided(interval.confidence)) + normal_ppf(power)
    return n * (z * se / abs(size)) ** 2
