"""Adaptive experiments' maths: posteriors against closed forms, Thompson sampling's floor and
stop rule, and seeded simulations of 10,000 requests."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from scipy import special
from scipy import stats as scipy_stats

from llmroute.experiments.bandit import (
    Allocation,
    BetaPosterior,
    NormalPosterior,
    Posterior,
    allocate,
    probability_best,
)


def exact_beta_b_beats_a(a: BetaPosterior, b: BetaPosterior) -> float:
    """P(p_b > p_a) for Beta posteriors with an integer alpha_b (Evan Miller's sum)."""
    total = 0.0
    for i in range(int(b.alpha)):
        total += math.exp(
            special.betaln(a.alpha + i, a.beta + b.beta)
            - math.log(b.beta + i)
            - special.betaln(1 + i, b.beta)
            - special.betaln(a.alpha, a.beta)
        )
    return total


def test_probability_best_matches_the_closed_form_for_two_rates() -> None:
    a, b = BetaPosterior.of(40, 60), BetaPosterior.of(50, 50)
    want = exact_beta_b_beats_a(a, b)
    got = probability_best([a, b], draws=40_000, seed=3)
    assert got[1] == pytest.approx(want, abs=4 * math.sqrt(want * (1 - want) / 40_000))
    assert sum(got) == pytest.approx(1.0)
    assert probability_best([a, b], draws=40_000, seed=3) == got  # seeded
    assert probability_best([a, b], draws=40_000, seed=3, minimize=True)[0] == pytest.approx(
        got[1], abs=0.02
    )


def test_the_normal_posterior_of_a_mean_is_students_t() -> None:
    values = [3.0, 4.0, 4.5, 5.0, 2.5, 4.0, 3.5]
    posterior = NormalPosterior.of(values)
    rng = random.Random(2)
    draws = np.array([posterior.draw(rng) for _ in range(40_000)])
    n = len(values)
    scale = np.std(values, ddof=1) / math.sqrt(n)
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        want = np.mean(values) + scale * scipy_stats.t.ppf(q, n - 1)
        assert np.quantile(draws, q) == pytest.approx(want, abs=0.02)


def test_a_posterior_that_is_not_proper_cannot_be_drawn_from() -> None:
    assert BetaPosterior().ready and BetaPosterior.of(0, 0).mean == 0.5
    assert not NormalPosterior.of([4.0]).ready
    assert not NormalPosterior.of([4.0, 4.0, 4.0]).ready  # no spread yet
    with pytest.raises(ValueError, match="two values"):
        NormalPosterior.of([1.0]).draw(random.Random())
    with pytest.raises(ValueError, match="proper"):
        probability_best([NormalPosterior.of([1.0, 2.0]), NormalPosterior()])
    with pytest.raises(ValueError, match="negative"):
        BetaPosterior.of(-1, 3)


def test_allocation_keeps_the_floor_and_splits_evenly_before_it_knows() -> None:
    unknown = allocate([NormalPosterior.of([1.0, 2.0]), NormalPosterior.of([5.0])])
    assert unknown == Allocation((0.5, 0.5), None)
    clear = allocate(
        [BetaPosterior.of(10, 90), BetaPosterior.of(14, 86), BetaPosterior.of(30, 70)],
        floor=0.1,
        stop_at=1.0,
    )
    assert clear.winner is None and clear.best is not None
    assert sum(clear.weights) == pytest.approx(1.0)
    assert min(clear.weights) >= 0.1
    assert clear.weights == pytest.approx([0.1 + 0.7 * b for b in clear.best])
    with pytest.raises(ValueError, match="does not fit"):
        allocate([BetaPosterior()] * 3, floor=0.4)
    with pytest.raises(ValueError, match="stop_at"):
        allocate([BetaPosterior()], stop_at=0.0)


def test_the_stop_rule_names_the_winner_and_sends_it_everything() -> None:
    posteriors = [BetaPosterior.of(200, 800), BetaPosterior.of(320, 680)]
    done = allocate(posteriors, stop_at=0.95)
    assert done.winner == 1 and done.weights == (0.0, 1.0)
    assert done.best is not None and done.best[1] >= 0.95
    # until every variant has min_samples values, a clear leader does not stop it
    early = allocate(posteriors, stop_at=0.95, min_samples=1_001, floor=0.1)
    assert early.winner is None and early.weights == pytest.approx((0.1, 0.9), abs=0.01)
    assert [p.observed for p in posteriors] == [1_000, 1_000]


def simulate(
    posteriors: Callable[[list[list[float]]], Sequence[Posterior]],
    outcome: Callable[[int, random.Random], float],
    *,
    arms: int,
    floor: float,
    stop_at: float,
    min_samples: int = 0,
    requests: int = 10_000,
    batch: int = 250,
) -> tuple[list[int], list[Allocation], int | None]:
    """Serve `requests` in batches: each batch is assigned by the current allocation, its
    feedback arrives, then the allocation is recomputed (until there is a winner). Returns
    the requests per arm, the allocation each batch used, and the batch that first served
    only the winner."""
    rng = random.Random(99)
    values: list[list[float]] = [[] for _ in range(arms)]
    served = [0] * arms
    used: list[Allocation] = []
    allocation = Allocation(tuple([1.0 / arms] * arms), None)
    stopped = None
    for start in range(0, requests, batch):
        used.append(allocation)
        for _ in range(batch):
            arm = rng.choices(range(arms), weights=allocation.weights)[0]
            served[arm] += 1
            values[arm].append(outcome(arm, rng))
        if allocation.winner is None:
            allocation = allocate(
                posteriors(values), floor=floor, stop_at=stop_at, min_samples=min_samples,
                draws=3_000, seed=start,
            )  # fmt: skip
            if allocation.winner is not None:
                stopped = len(used)
    return served, used, stopped


def check_the_stop(
    used: list[Allocation], stopped: int, stop_at: float, floor: float, *, held: bool = False
) -> int:
    """The floor held until the stop, the stop came when P(best) reached `stop_at` and not
    before (unless `held` back by min_samples), and the winner got everything after it;
    returns the winner."""
    running, done = used[:stopped], used[stopped:]
    assert all(a.winner is None and min(a.weights) >= floor - 1e-12 for a in running)
    if not held:
        assert all(max(a.best) < stop_at for a in running if a.best is not None)
    winner = done[0].winner
    assert winner is not None and done[0].best is not None
    assert done[0].best[winner] >= stop_at
    assert all(a.weights[winner] == 1.0 and sum(a.weights) == 1.0 for a in done)
    return winner


def test_thompson_sampling_over_10000_requests_finds_the_better_rate() -> None:
    rates = [0.10, 0.13, 0.09]

    def posteriors(values: list[list[float]]) -> list[BetaPosterior]:
        return [BetaPosterior.of(int(sum(v)), len(v) - int(sum(v))) for v in values]

    served, used, stopped = simulate(
        posteriors,
        lambda arm, rng: float(rng.random() < rates[arm]),
        arms=3,
        floor=0.05,
        stop_at=0.95,
    )
    assert stopped is not None and stopped < len(used)
    assert check_the_stop(used, stopped, 0.95, 0.05) == 1
    assert served[1] > 0.5 * sum(served)  # most traffic went to the better arm


def test_thompson_sampling_on_a_numeric_metric_finds_the_higher_mean() -> None:
    means = [3.75, 3.85]

    def posteriors(values: list[list[float]]) -> list[NormalPosterior]:
        return [NormalPosterior.of(v) for v in values]

    served, used, stopped = simulate(
        posteriors,
        lambda arm, rng: min(5.0, max(1.0, rng.gauss(means[arm], 1.2))),
        arms=2,
        floor=0.1,
        stop_at=0.99,
        min_samples=500,
    )
    assert stopped is not None
    assert check_the_stop(used, stopped, 0.99, 0.1, held=True) == 1
    assert min(served) >= 500
    assert served[1] > 0.6 * sum(served)


def test_equal_arms_do_not_stop_with_a_winner() -> None:
    served, used, stopped = simulate(
        lambda values: [BetaPosterior.of(int(sum(v)), len(v) - int(sum(v))) for v in values],
        lambda arm, rng: float(rng.random() < 0.2),
        arms=2,
        floor=0.1,
        stop_at=0.99,
    )
    assert stopped is None and all(a.winner is None for a in used)
    assert min(served) > 0.1 * sum(served)
