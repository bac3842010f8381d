"""Rate limits and budgets: exact, in memory or shared through Redis.

See docs/limits.md. Names are imported on first use, so that the
configuration models load without the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .budget import BudgetStage, BudgetStatus
    from .config import BudgetRule, BudgetsConfig, RateLimitRule, RateLimitsConfig
    from .rate import RateLimitStage
    from .stats import LimitCounters, LimitStats

__all__ = [
    "BudgetRule",
    "BudgetStage",
    "BudgetStatus",
    "BudgetsConfig",
    "LimitCounters",
    "LimitStats",
    "RateLimitRule",
    "RateLimitStage",
    "RateLimitsConfig",
]

_LAZY = {
    "BudgetRule": ".config",
    "BudgetStage": ".budget",
    "BudgetStatus": ".budget",
    "BudgetsConfig": ".config",
    "LimitCounters": ".stats",
    "LimitStats": ".stats",
    "RateLimitRule": ".config",
    "RateLimitStage": ".rate",
    "RateLimitsConfig": ".config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
