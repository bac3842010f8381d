"""The report's statistics against reference computations: scipy and statsmodels (test-only
dependencies), published examples, exact enumeration and seeded coverage simulations."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from llmroute.experiments.stats import (
    Interval,
    Summary,
    bonferroni,
    bootstrap_medians,
    mean_ratio_interval,
    median_ratio_interval,
    newcombe_interval,
    normal_ppf,
    sample_size,
    t_ppf,
    welch_interval,
    wilson_interval,
)

# ---------------------------------------------------------------- Student's t


@pytest.mark.parametrize(
    "df", [0.4, 1, 1.5, 2, 2.7, 3, 5, 9.3, 30, 99.5, 1_000, 25_000, 99_999, 1e5, 3e6, 1e11]
)
def test_t_quantiles_match_scipy(df: float) -> None:
    probabilities = [1e-12, 1e-6, 0.001, 0.0125, 0.025, 0.05, 0.2, 0.4999, 0.5001, 0.8, 0.9]
    probabilities += [0.95, 0.975, 0.9875, 0.995, 0.999, 1 - 1e-6, 1 - 1e-10]
    for p in probabilities:
        want = float(scipy_stats.t.ppf(p, df))
        assert t_ppf(p, df) == pytest.approx(want, rel=1e-11), (p, df)
    assert t_ppf(0.5, df) == 0.0


def test_t_quantiles_refuse_what_has_none() -> None:
    for p in (0.0, 1.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="probability"):
            t_ppf(p, 3)
    for df in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="degrees of freedom"):
            t_ppf(0.9, df)


def test_normal_quantile_matches_scipy() -> None:
    for p in (1e-9, 0.025, 0.5, 0.8, 0.975):
        assert normal_ppf(p) == pytest.approx(float(scipy_stats.norm.ppf(p)), rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------- Welch


@pytest.mark.parametrize(
    ("n1", "n2", "sd1", "sd2", "confidence"),
    [(2, 2, 1.0, 1.0, 0.95), (5, 40, 1.0, 4.0, 0.95), (300, 120, 2.0, 0.5, 0.975),
     (4_000, 4_100, 1.3, 1.2, 0.99), (30, 31, 0.001, 0.002, 0.9)],
)  # fmt: skip
def test_welch_interval_matches_scipy(
    n1: int, n2: int, sd1: float, sd2: float, confidence: float
) -> None:
    rng = np.random.default_rng(n1 * 1_000 + n2)
    control, candidate = rng.normal(4.0, sd1, n1), rng.normal(4.2, sd2, n2)
    got = welch_interval(Summary.of(list(control)), Summary.of(list(candidate)), confidence)
    want = scipy_stats.ttest_ind(candidate, control, equal_var=False).confidence_interval(
        confidence
    )
    assert got is not None
    assert got.estimate == pytest.approx(candidate.mean() - control.mean(), rel=1e-12)
    assert (got.low, got.high) == pytest.approx((want.low, want.high), rel=1e-9)
    assert got.kind == "difference" and got.confidence == confidence


def test_welch_interval_needs_two_values_and_some_spread() -> None:
    assert welch_interval(Summary.of([1.0]), Summary.of([1.0, 2.0])) is None
    assert welch_interval(Summary.of([3.0, 3.0]), Summary.of([4.0, 4.0, 4.0])) is None
    assert Summary.of([]).n == 0 and math.isnan(Summary.of([]).mean)


# ---------------------------------------------------------------- Wilson and Newcombe


def test_newcombe_matches_newcombes_published_example() -> None:
    """Newcombe (1998), Statistics in Medicine 17, 873-890, table II: 56/70 - 48/80, method
    10 (the hybrid score interval): +0.0524 to +0.3339."""
    got = newcombe_interval((48, 80), (56, 70))
    assert got is not None
    assert got.estimate == pytest.approx(0.2)
    assert (round(got.low, 4), round(got.high, 4)) == (0.0524, 0.3339)


@pytest.mark.parametrize("seed", range(12))
def test_wilson_and_newcombe_match_statsmodels(seed: int) -> None:
    rng = random.Random(seed)
    n1, n2 = rng.choice([1, 3, 20, 500, 7_000]), rng.choice([2, 9, 50, 800, 6_500])
    s1 = rng.choice([0, n1, rng.randint(0, n1)])
    s2 = rng.choice([0, n2, rng.randint(0, n2)])
    confidence = rng.choice([0.95, 0.975, 0.99])
    alpha = 1 - confidence
    assert wilson_interval(s1, n1, confidence) == pytest.approx(
        proportion_confint(s1, n1, alpha=alpha, method="wilson"), rel=1e-9, abs=1e-12
    )
    got = newcombe_interval((s1, n1), (s2, n2), confidence)
    want = confint_proportions_2indep(s2, n2, s1, n1, method="newcomb", alpha=alpha)
    assert got is not None
    assert (got.low, got.high) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert got.estimate == pytest.approx(s2 / n2 - s1 / n1)


def test_proportions_refuse_impossible_counts() -> None:
    assert newcombe_interval((0, 0), (3, 10)) is None
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)


# ---------------------------------------------------------------- ratio of means


def test_mean_ratio_interval_covers_the_true_ratio_at_its_level() -> None:
    """Seeded coverage: 1,500 simulated experiments of skewed costs (exponential, with a
    third of zero-cost cache hits); the 95% interval of the ratio of means holds the true
    ratio in 95% of them (within the simulation's own error)."""
    rng = random.Random(7)
    true_ratio = 0.8
    covered = 0
    trials = 1_500

    def costs(mean: float, n: int) -> list[float]:
        return [0.0 if rng.random() < 1 / 3 else rng.expovariate(1.5 / mean) for _ in range(n)]

    for _ in range(trials):
        control, candidate = costs(0.01, 150), costs(0.01 * true_ratio, 170)
        got = mean_ratio_interval(Summary.of(control), Summary.of(candidate))
        assert got is not None and got.kind == "ratio"
        covered += got.low <= true_ratio <= got.high
    share = covered / trials
    assert abs(share - 0.95) < 3 * math.sqrt(0.95 * 0.05 / trials) + 0.005, share


def test_mean_ratio_interval_is_the_delta_method_on_the_log() -> None:
    a, b = [1.0, 2.0, 3.0, 6.0], [2.0, 2.5, 4.5, 7.0, 9.0]
    got = mean_ratio_interval(Summary.of(a), Summary.of(b))
    assert got is not None
    ma, mb = np.mean(a), np.mean(b)
    ua, ub = np.var(a, ddof=1) / (4 * ma**2), np.var(b, ddof=1) / (5 * mb**2)
    df = (ua + ub) ** 2 / (ua**2 / 3 + ub**2 / 4)
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(ua + ub)
    assert got.estimate == pytest.approx(mb / ma)
    assert (got.low, got.high) == pytest.approx(
        (mb / ma * math.exp(-half), mb / ma * math.exp(half)), rel=1e-10
    )
    assert mean_ratio_interval(Summary.of([0.0, 0.0]), Summary.of(b)) is None


# ---------------------------------------------------------------- ratio of medians


def test_bootstrap_medians_have_resamplings_exact_distribution() -> None:
    """The O(1) draw of a resample's median has the distribution of resampling itself:
    checked against every one of the n**n resamples of three and of four values."""
    for values in ([1.0, 2.0, 5.0], [1.0, 2.0, 5.0, 11.0]):
        n = len(values)
        exact = Counter(
            statistics.median(values[i] for i in picks)
            for picks in itertools.product(range(n), repeat=n)
        )
        draws = 60_000
        drawn = Counter(bootstrap_medians(values[::-1], draws, random.Random(5)))
        assert set(drawn) <= set(exact)
        for median, count in exact.items():
            p = count / n**n
            assert abs(drawn[median] / draws - p) < 4.5 * math.sqrt(p * (1 - p) / draws), (
                values,
                median,
            )


@pytest.mark.parametrize(("n1", "n2"), [(31, 40), (200, 201), (600, 500)])
def test_median_ratio_interval_matches_scipys_bootstrap(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1 + n2)
    control = list(rng.lognormal(-1.0, 0.8, n1))
    candidate = list(rng.lognormal(-1.2, 0.9, n2))
    got = median_ratio_interval(control, candidate, seed=11)
    want = scipy_stats.bootstrap(
        (control, candidate),
        lambda x, y, axis: np.median(y, axis=axis) / np.median(x, axis=axis),
        method="percentile",
        n_resamples=20_000,
        vectorized=True,
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert got is not None
    assert got.estimate == pytest.approx(np.median(candidate) / np.median(control))
    # two Monte Carlo estimates of the same percentiles: close, not equal
    width = want.high - want.low
    assert abs(got.low - want.low) < 0.05 * width
    assert abs(got.high - want.high) < 0.05 * width
    assert median_ratio_interval(control, candidate, seed=11) == got  # seeded


def test_median_ratio_interval_needs_positive_medians() -> None:
    assert median_ratio_interval([], [1.0]) is None
    assert median_ratio_interval([0.0, 0.0, 1.0], [1.0, 2.0]) is None
    one = median_ratio_interval([2.0], [3.0], resamples=50)
    assert one is not None and (one.low, one.estimate, one.high) == (1.5, 1.5, 1.5)


# ---------------------------------------------------------------- several comparisons, power


def test_bonferroni_splits_the_error_rate() -> None:
    assert bonferroni(0.95, 1) == 0.95
    assert bonferroni(0.95, 2) == pytest.approx(0.975)
    assert bonferroni(0.95, 4) == pytest.approx(0.9875)
    with pytest.raises(ValueError, match="at least one"):
        bonferroni(0.95, 0)


def test_sample_size_matches_statsmodels_for_a_difference_of_means() -> None:
    sd, n, effect = 2.0, 400, 0.25
    interval = Interval(0.1, -0.2, 0.4, 0.95, "difference", se=math.sqrt(2 * sd**2 / n))
    want = NormalIndPower().solve_power(effect_size=effect / sd, alpha=0.05, power=0.8, ratio=1)
    assert sample_size(interval, n, effect) == pytest.approx(want, rel=1e-3)
    corrected = Interval(0.1, -0.2, 0.4, 0.975, "difference", se=math.sqrt(2 * sd**2 / n))
    want = NormalIndPower().solve_power(effect_size=effect / sd, alpha=0.025, power=0.8, ratio=1)
    assert sample_size(corrected, n, effect) == pytest.approx(want, rel=1e-3)
    assert sample_size(interval, n, 0.0) is None


def test_sample_size_gives_the_power_it_promises() -> None:
    """Seeded power simulation: at the size `sample_size` names for a 4-point difference
    in a rate of 50%, the Newcombe interval detects it in about 80% of experiments."""
    first = newcombe_interval((500, 1_000), (540, 1_000))
    assert first is not None
    n = math.ceil(sample_size(first, 1_000, 0.04) or 0)
    assert 2_000 < n < 3_000
    rng = np.random.default_rng(21)
    trials = 600
    hits = 0
    for _ in range(trials):
        a, b = int(rng.binomial(n, 0.5)), int(rng.binomial(n, 0.54))
        got = newcombe_interval((a, n), (b, n))
        assert got is not None
        hits += got.detected
    assert abs(hits / trials - 0.8) < 3 * math.sqrt(0.16 / trials), hits / trials


def test_a_ratios_sample_size_is_for_a_relative_change() -> None:
    interval = Interval(0.9, 0.8, 1.01, 0.95, "ratio", se=0.05)
    z = normal_ppf(0.975) + normal_ppf(0.8)
    assert sample_size(interval, 100, -0.1) == pytest.approx(100 * (z * 0.05 / math.log(0.9)) ** 2)
    assert interval.null == 1.0 and not interval.detected
