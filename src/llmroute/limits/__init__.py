"""Rate limits and budgets: exact, in memory or shared through Redis.

See docs/limits.md. Names are imported on first use (see `llmroute._lazy`), so
that the configuration models load without the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports as _exports

if TYPE_CHECKING:
    from .budget import BudgetStage as BudgetStage
    from .budget import BudgetStatus as BudgetStatus
    from .config import BudgetRule as BudgetRule
    from .config import BudgetsConfig as BudgetsConfig
    from .config import RateLimitRule as RateLimitRule
    from .config import RateLimitsConfig as RateLimitsConfig
    from .rate import RateLimitStage as RateLimitStage
    from .stats import LimitCounters as LimitCounters
    from .stats import LimitStats as LimitStats

_EXPORTS = {
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

__getattr__, __dir__, __all__ = _exports(__name__, _EXPORTS)
