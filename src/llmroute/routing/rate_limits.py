"""The rate limits each provider last reported, per target.

Providers say in their response headers how many requests and tokens are
left until a reset. The pipeline writes what it read here (`saw`); the
selector reads it to skip targets whose token budget cannot fit a request,
the attempt driver to cool a target down when nothing is left, and
`router.stats()` to report it. One board per router, keyed by `Target.key`,
so every route using a provider and model sees the same state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ..providers import RateLimitState
    from .model import Target

__all__ = ["LimitReport", "RateLimitBoard"]


class LimitReport(NamedTuple):
    """A target's last reported rate-limit state, and when it arrived (llmroute's clock)."""

    state: RateLimitState
    at: float


class RateLimitBoard:
    """The last rate-limit report of every target that has sent one (see the module doc)."""

    __slots__ = ("_reports", "epoch")

    def __init__(self) -> None:
        self._reports: dict[str, LimitReport] = {}
        #: Counts the targets that have reported: it changes only when one reports for the
        #: first time, so a reader can keep "no target of mine has reported" until it does.
        self.epoch = 0

    def saw(self, target: Target, state: RateLimitState, now: float) -> None:
        """Record what `target`'s rate-limit headers said, at `now`."""
        reports = self._reports
        key = target.key
        if key not in reports:
            self.epoch += 1
        reports[key] = LimitReport(state, now)

    def forget(self, key: str) -> None:
        """Drop `key`'s last report (its catalog forgot it)."""
        self._reports.pop(key, None)

    def report(self, key: str) -> LimitReport | None:
        """The last report for `key`, or None before its first; a new object per report."""
        return self._reports.get(key)

    def state(self, key: str) -> RateLimitState | None:
        """The last rate-limit state reported for `key`."""
        report = self._reports.get(key)
        return report.state if report is not None else None

    def reported(self, keys: Iterable[str]) -> bool:
        """Whether any of `keys` has reported rate limits."""
        reports = self._reports
        return any(key in reports for key in keys)
