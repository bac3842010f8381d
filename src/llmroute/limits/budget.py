"""The budget stage: refuse a request while a budget that applies to it is spent.

Before routing, the request's cost is estimated (its input estimate and
`max_tokens`, or `output_estimate`, at the highest price among its route's
targets) and reserved in every budget window that applies; a window whose
spend plus reservations has reached its limit refuses the request with
`BudgetExceeded` before any provider is called. A request already admitted
always finishes; when it ends, its reservation is released and its actual
cost (`RouteInfo.cost_usd`) added to the spend. The estimate counts `n` choices.

A target without a known price would let money through uncounted, so by default
(``unpriced: refuse``) a request that a budget applies to is refused when its route
could be served by one; ``unpriced: {input, output}`` counts such targets at that
price instead, and ``unpriced: allow`` counts them 0 USD (logged and counted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from .._clock import Clock
from .._errors import BudgetExceeded
from .._prices import PriceBook
from .._request import ChatRequest
from .._tasks import Background
from ..pipeline.stage import Answer, Outcome, RequestContext, Stage
from ..routing.model import Target
from ..stores.redis import RedisUnavailable
from .budget_store import BudgetStore, Lease, Usage, WindowKey
from .config import BudgetRule, BudgetsConfig, UnpricedPrice
from .rate import estimate_input_tokens
from .stats import LimitCounters
from .subjects import subject_of
from .windows import format_usd

__all__ = ["BudgetStage", "BudgetStatus"]

logger = logging.getLogger("llmroute.limits")

_NANO = 1_000_000_000
#: How long a lease outlives its request's deadline (seconds).
_LEASE_GRACE = 60.0


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One subject's budget in the current window, as `router.budgets()` reports it.

    Attributes:
        per: what the budget is counted per (``user``, ``team``, ``global``, ...).
        subject: whose budget it is (the user, team, ...; ``*`` for global).
        budget: the budget, such as ``5 USD/day``.
        limit_usd: the dollars allowed in the window.
        spent_usd: the dollars spent so far in the window.
        reserved_usd: the estimated cost of the requests in flight.
        remaining_usd: ``limit_usd - spent_usd``, never below 0.
        window_start, window_end: the window (aware datetimes in the budgets' zone).
    """

    per: str
    subject: str
    budget: str
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    remaining_usd: float
    window_start: datetime
    window_end: datetime


@dataclass(frozen=True, slots=True)
class _Budget:
    rule: BudgetRule
    shape: str
    limit: int


@dataclass(frozen=True, slots=True)
class _Held:
    windows: list[WindowKey]
    lease: Lease


class BudgetStage(Stage):
    """Enforces the `budgets` rules (see the module docstring)."""

    name = "budgets"

    def __init__(
        self, config: BudgetsConfig, store: BudgetStore, clock: Clock, prices: PriceBook
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._prices = prices
        self._zone = ZoneInfo(config.timezone)
        self._budgets = [
            _Budget(
                r,
                f"{r.per}:{format_usd(r.usd.usd)}/{r.usd.count}{r.usd.unit}",
                round(r.usd.usd * _NANO),
            )
            for r in config.rules
        ]
        self._background = Background()
        self._unpriced_seen: set[str] = set()
        unpriced = config.unpriced
        #: USD per input and output token assumed for unpriced targets (None: refuse/allow).
        self._assumed = (
            (unpriced.input / 1e6, unpriced.output / 1e6)
            if isinstance(unpriced, UnpricedPrice)
            else None
        )
        #: What the stage has done so far.
        self.counters = LimitCounters()

    @property
    def before_cache(self) -> bool:
        """Whether the stage runs before the cache lookup (so hits count too)."""
        return self._config.before_cache

    # -------------------------------------------------------------- admission

    async def before(self, ctx: RequestContext) -> Answer | None:
        now = self._clock.time()
        windows = []
        for budget in self._budgets:
            subject = subject_of(budget.rule.per, ctx)
            if subject is None:
                continue
            start, end = budget.rule.usd.window(now, self._zone)
            windows.append(WindowKey(budget.shape, subject, start, end, budget.limit))
        if not windows:
            return None
        deadline = ctx.options.timeout or ctx.route.timeout
        amount = round(self.estimate(ctx) * _NANO)
        lease = Lease(ctx.info.request_id, amount, now + deadline + _LEASE_GRACE)
        try:
            refusal = await self._store.reserve(windows, lease, now)
        except RedisUnavailable as exc:
            self._unavailable(exc)  # raises unless the policy allows the request
            return None
        if refusal is not None:
            index, usage = refusal
            self.counters.refused += 1
            raise BudgetExceeded(self._refusal(windows[index], usage))
        self.counters.allowed += 1
        ctx.state[self.name] = _Held(windows, lease)
        return None

    def _refusal(self, window: WindowKey, usage: Usage) -> str:
        budget = next(b for b in self._budgets if b.shape == window.rule)
        who = "everyone" if budget.rule.per == "global" else f"{budget.rule.per} {window.subject!r}"
        ends = datetime.fromtimestamp(window.end, self._zone).isoformat()
        return (
            f"budget reached: {budget.rule.usd} for {who}: {format_usd(usage.spent / _NANO)} USD "
            f"spent and {format_usd(usage.reserved / _NANO)} USD in flight; the window ends {ends}"
        )

    def _unavailable(self, exc: RedisUnavailable) -> None:
        if self._config.when_unavailable == "allow":
            self.counters.allowed_unavailable += 1
            return
        self.counters.refused_unavailable += 1
        raise BudgetExceeded(
            f"budgets cannot be checked ({exc}); refusing (when_unavailable: refuse)"
        ) from exc

    def estimate(self, ctx: RequestContext) -> float:
        """The request's estimated cost in USD at the dearest of its route's targets.

        Output tokens are counted once per choice (`n`). A target without a known
        price raises `BudgetExceeded` under ``unpriced: refuse``, counts at the
        configured price under ``unpriced: {input, output}``, and 0 under ``allow``.
        """
        request = ctx.request
        input_tokens = estimate_input_tokens(request)
        output = 0
        if isinstance(request, ChatRequest):
            limit = request.output_limit
            output = limit if limit is not None else self._config.output_estimate
            output *= request.n or 1
        dearest = 0.0
        for route in ctx.route.chain():
            for target in route.targets:
                rates = self._rates(target)
                if rates is not None:
                    dearest = max(dearest, input_tokens * rates[0] + output * rates[1])
        return dearest

    def _rates(self, target: Target) -> tuple[float, float] | None:
        rates = self._prices.target_rates(target)
        if rates is not None:
            return rates
        if self._assumed is not None:
            return self._assumed
        if self._config.unpriced == "refuse":
            self.counters.refused += 1
            raise BudgetExceeded(
                f"no price is known for {target.key}, which may serve this request, and a "
                "budget applies to it: refused (give the target a `price`, or set "
                "budgets.unpriced to a conservative price)"
            )
        return None

    # -------------------------------------------------------------- spend

    async def after(self, ctx: RequestContext, outcome: Outcome) -> None:
        held = ctx.state.pop(self.name, None)
        if not isinstance(held, _Held):
            return
        info = ctx.info
        cost = info.cost_usd  # read at once: the recorder may price it in another thread later
        if cost is None:
            cost = 0.0
            usage = info.usage
            if info.attempts and usage is not None:
                if self._assumed is not None:
                    cost = usage.input * self._assumed[0] + usage.output * self._assumed[1]
                else:
                    self._unpriced(info.target or "?")
        spent = max(0, round(cost * _NANO))
        if self._store.remote:  # a network round trip: off the request's path
            self._background.start(self._release(held, spent))
        else:
            await self._release(held, spent)

    def _unpriced(self, target: str) -> None:
        self.counters.unpriced += 1
        if target not in self._unpriced_seen:
            self._unpriced_seen.add(target)
            logger.warning(
                "llmroute budgets: no price is known for %s; its requests count 0 USD "
                "(set the target's `price` to count them)", target,
            )  # fmt: skip

    async def _release(self, held: _Held, spent: int) -> None:
        try:
            await self._store.release(held.windows, held.lease, spent)
        except RedisUnavailable:
            self.counters.lost_updates += 1

    # -------------------------------------------------------------- reporting

    async def report(self) -> list[BudgetStatus]:
        """Every subject's budget in the current window (subjects seen in it so far)."""
        now = self._clock.time()
        windows: dict[str, tuple[_Budget, float, float]] = {}
        for budget in self._budgets:
            start, end = budget.rule.usd.window(now, self._zone)
            windows[budget.shape] = (budget, start, end)
        found = await self._store.usage([(shape, s, e) for shape, (_, s, e) in windows.items()])
        statuses = []
        for shape, subject, usage in found:
            budget, start, end = windows[shape]
            limit = budget.rule.usd.usd
            spent = usage.spent / _NANO
            statuses.append(
                BudgetStatus(
                    per=budget.rule.per,
                    subject=subject,
                    budget=str(budget.rule.usd),
                    limit_usd=limit,
                    spent_usd=spent,
                    reserved_usd=max(0.0, usage.reserved / _NANO),
                    remaining_usd=max(0.0, limit - spent),
                    window_start=datetime.fromtimestamp(start, self._zone),
                    window_end=datetime.fromtimestamp(end, self._zone),
                )
            )
        return statuses

    async def drain(self) -> None:
        """Wait for the spend records in flight."""
        await self._background.drain()

    async def check(self) -> str | None:
        return await self._store.check()

    async def aclose(self) -> None:
        await self.drain()
        await self._store.aclose()
