"""The maths of adaptive experiments: posteriors, Thompson sampling, and when to stop.

Pure functions over feedback counts, seeded: the same feedback and seed give
the same weights. An adaptive experiment keeps one posterior per variant of
its metric:

- a boolean metric (a thumbs up): a `BetaPosterior` of the rate, from a
  uniform Beta(1, 1) prior;
- a numeric metric (a rating): a `NormalPosterior` of the mean, the
  Normal-Gamma posterior (unknown mean and variance) from the reference prior,
  whose mean is distributed as Student's t around the sample mean with scale
  s / sqrt(n). It needs two values and some spread before it says anything;
  until every variant has them, `allocate` splits traffic evenly.

`probability_best` estimates, by seeded Monte Carlo draws from every
posterior, the probability that each variant is the best. Thompson sampling
sends each new sticky key to a variant with that probability (`allocate`),
mixed with a floor so that no variant starves: each gets at least `floor` of
new keys while the experiment runs. `allocate` also applies the stop rule:
once one variant's probability of being best reaches `stop_at`, it is the
winner.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Allocation",
    "BetaPosterior",
    "NormalPosterior",
    "Posterior",
    "allocate",
    "probability_best",
]


class Posterior(Protocol):
    """What Thompson sampling needs of a variant's posterior."""

    @property
    def ready(self) -> bool:
        """Whether the posterior is proper (it can be drawn from)."""
        ...

    @property
    def observed(self) -> int:
        """How many values it was updated with."""
        ...

    def draw(self, rng: random.Random) -> float:
        """One draw of the variant's mean from the posterior."""
        ...


@dataclass(frozen=True, slots=True)
class BetaPosterior:
    """The posterior Beta(`alpha`, `beta`) of a rate, from a Beta(1, 1) prior."""

    alpha: float = 1.0
    beta: float = 1.0

    @classmethod
    def of(cls, successes: int, failures: int) -> BetaPosterior:
        """The posterior after `successes` true and `failures` false values."""
        if successes < 0 or failures < 0:
            raise ValueError(f"counts must not be negative: {successes}, {failures}")
        return cls(1.0 + successes, 1.0 + failures)

    @property
    def ready(self) -> bool:
        return True

    @property
    def observed(self) -> int:
        return round(self.alpha + self.beta - 2.0)

    @property
    def mean(self) -> float:
        """The posterior mean of the rate."""
        return self.alpha / (self.alpha + self.beta)

    def draw(self, rng: random.Random) -> float:
        return rng.betavariate(self.alpha, self.beta)


@dataclass(frozen=True, slots=True)
class NormalPosterior:
    """The Normal-Gamma posterior of a mean with unknown variance, from the reference
    prior p(mean, variance) proportional to 1 / variance.

    With n values of mean m and sum of squared deviations ss, the mean's
    posterior is m + sqrt(ss / (n (n - 1))) * T with T of Student's t with n - 1
    degrees of freedom (precision ~ Gamma((n - 1) / 2, ss / 2), and the mean
    given the precision tau ~ Normal(m, 1 / (n tau))).
    """

    n: int = 0
    mean: float = 0.0
    ss: float = 0.0

    @classmethod
    def of(cls, values: Sequence[float]) -> NormalPosterior:
        """The posterior after `values`."""
        n = len(values)
        if n == 0:
            return cls()
        mean = math.fsum(values) / n
        return cls(n, mean, math.fsum((v - mean) ** 2 for v in values))

    @property
    def ready(self) -> bool:
        return self.n >= 2 and self.ss > 0.0

    @property
    def observed(self) -> int:
        return self.n

    def draw(self, rng: random.Random) -> float:
        if not self.ready:
            raise ValueError("a Normal-Gamma posterior needs two values that differ")
        shape = (self.n - 1) / 2.0
        precision = rng.gammavariate(shape, 2.0 / self.ss)  # scale = 1 / rate
        return rng.gauss(self.mean, 1.0 / math.sqrt(self.n * precision))


@dataclass(frozen=True, slots=True)
class Allocation:
    """Where new sticky keys go, and whether the experiment is over.

    Attributes:
        weights: the share of new keys for each variant (they sum to 1; each
            is at least the floor until there is a winner).
        best: each variant's probability of being the best (None until every
            variant's posterior is proper).
        winner: the index of the winning variant once its probability of being
            best reached `stop_at`; then it gets every new key.
    """

    weights: tuple[float, ...]
    best: tuple[float, ...] | None
    winner: int | None = None


def probability_best(
    posteriors: Sequence[Posterior],
    *,
    draws: int = 10_000,
    seed: int = 0,
    minimize: bool = False,
) -> tuple[float, ...]:
    """Each variant's probability of having the highest mean (the lowest, with
    `minimize`), from `draws` seeded joint draws of the posteriors; ties are broken at
    random."""
    if not posteriors:
        raise ValueError("expected at least one posterior")
    if draws < 1:
        raise ValueError(f"expected at least one draw, got {draws}")
    if not all(p.ready for p in posteriors):
        raise ValueError("every posterior must be proper (see Posterior.ready)")
    rng = random.Random(seed)
    sign = -1.0 if minimize else 1.0
    wins = [0] * len(posteriors)
    indices = range(len(posteriors))
    for _ in range(draws):
        values = [sign * p.draw(rng) for p in posteriors]
        top = max(values)
        leaders = [i for i in indices if values[i] == top]
        wins[leaders[0] if len(leaders) == 1 else rng.choice(leaders)] += 1
    return tuple(w / draws for w in wins)


def allocate(
    posteriors: Sequence[Posterior],
    *,
    floor: float = 0.05,
    stop_at: float = 0.95,
    min_samples: int = 0,
    draws: int = 10_000,
    seed: int = 0,
    minimize: bool = False,
) -> Allocation:
    """Thompson sampling's weights with a `floor` per variant, and the stop rule.

    Each variant gets ``floor + (1 - k * floor) * P(best)`` of new keys (k
    variants), so the weights keep Thompson sampling's proportions above the
    floor. When a variant's P(best) reaches `stop_at`, and every variant has at
    least `min_samples` values, it is the winner and gets every new key.

    The rule is looked at again with every update, and each look is another
    chance for noise to cross the threshold: with few values a lucky streak
    can, so `min_samples` keeps the first looks from deciding.
    """
    k = len(posteriors)
    if k == 0:
        raise ValueError("expected at least one posterior")
    if not 0.0 <= floor * k <= 1.0:
        raise ValueError(f"a floor of {floor} per variant does not fit {k} variants")
    if not 0.0 < stop_at <= 1.0:
        raise ValueError(f"expected stop_at in (0, 1], got {stop_at}")
    if not all(p.ready for p in posteriors):
        return Allocation(tuple([1.0 / k] * k), None)
    best = probability_best(posteriors, draws=draws, seed=seed, minimize=minimize)
    leader = max(range(k), key=best.__getitem__)
    if best[leader] >= stop_at and min(p.observed for p in posteriors) >= min_samples:
        return Allocation(tuple(float(i == leader) for i in range(k)), best, leader)
    spread = 1.0 - k * floor
    return Allocation(tuple(floor + spread * b for b in best), best)
