"""Experiments: A/B tests of models, routes, parameters and prompts (see docs/experiments.md).

Names are imported on first use (see `llmroute._lazy`), so that the
configuration models load without the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports as _exports

if TYPE_CHECKING:
    from .config import ExperimentConfig as ExperimentConfig
    from .config import ShadowConfig as ShadowConfig
    from .config import VariantConfig as VariantConfig
    from .keys import sticky_digest as sticky_digest
    from .report import Comparison as Comparison
    from .report import ExperimentReport as ExperimentReport
    from .report import MetricFigure as MetricFigure
    from .report import VariantFigures as VariantFigures
    from .shadow import ShadowStatus as ShadowStatus
    from .stats import Interval as Interval

_EXPORTS = {
    "Comparison": ".report",
    "ExperimentConfig": ".config",
    "ExperimentReport": ".report",
    "Interval": ".stats",
    "MetricFigure": ".report",
    "ShadowConfig": ".config",
    "ShadowStatus": ".shadow",
    "VariantConfig": ".config",
    "VariantFigures": ".report",
    "sticky_digest": ".keys",
}

__getattr__, __dir__, __all__ = _exports(__name__, _EXPORTS)
