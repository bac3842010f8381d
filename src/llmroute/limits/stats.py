"""Counters of the rate-limit and budget stages, as `router.limit_stats()` reports them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LimitCounters", "LimitStats"]


@dataclass(slots=True)
class LimitCounters:
    """What one stage (rate limits, or budgets) has done since the router started.

    Attributes:
        allowed: requests let through after a check.
        refused: requests refused by a rule (`LocalRateLimitExceeded` or `BudgetExceeded`).
        allowed_unavailable: requests let through unchecked because Redis was
            unavailable (``when_unavailable: allow``).
        refused_unavailable: requests refused because Redis was unavailable
            (``when_unavailable: refuse``).
        lost_updates: reconciliations or spend records that could not reach
            Redis (their effect is lost).
        unpriced: requests whose cost was unknown, counted as 0 USD (budgets).
    """

    allowed: int = 0
    refused: int = 0
    allowed_unavailable: int = 0
    refused_unavailable: int = 0
    lost_updates: int = 0
    unpriced: int = 0


@dataclass(frozen=True, slots=True)
class LimitStats:
    """The rate-limit and budget counters of a router (None: the section is not configured).

    `redis_failures` counts Redis calls of either stage that failed or were
    skipped while Redis was resting after a failure.
    """

    rate_limits: LimitCounters | None
    budgets: LimitCounters | None
    redis_failures: int
