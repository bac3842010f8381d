"""Request cost from genai-prices, looked up once per model and computed lazily.

genai-prices takes a few hundred microseconds per calculation and a third of a
second to import, so llmroute never prices inside the request: a response's
`cost_usd` is computed the first time someone reads it (the caller, or the
recorder off the hot path). Unknown models cost None, never 0.

`PriceBook` is also the one place a target's price is read: its own `price`
when the config gives one, else genai-prices' for its provider and model
(`target_rates` for ranking and budgets, `pricer` for the cost of an answer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from ._types import TokenUsage

if TYPE_CHECKING:
    from ._config import PriceConfig
    from .routing.model import Target

__all__ = ["PriceBook", "custom_cost"]

_MISSING = object()
#: The most (provider, model, service tier) rates `PriceBook` holds; past it, the one held
#: longest gives way. A request names its service tier, so a client could make up tiers.
MAX_HELD_RATES = 1024


class PriceBook:
    """Prices requests; caches the model lookups of one router.

    `now` is the wall clock prices are looked up at (Unix seconds; tests give their own).
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._models: dict[tuple[str, str], Any] = {}
        #: Flat rates by (provider, model, service tier), with the Unix times between which
        #: they hold (from when they were looked up to `_next_change`): a cost within that
        #: window is one multiplication per kind of token, not a genai-prices lookup.
        self._held: dict[tuple[str, str, str | None], tuple[_LinearRates, float, float]] = {}
        #: Each target's rates, looked up on first use (by the target object: two routes
        #: may give one ``provider/model`` different prices).
        self._target_rates: dict[Target, tuple[float, float] | None] = {}
        self._linear: dict[tuple[int, tuple[tuple[str, Any], ...]], _LinearRates] = {}
        self._lock = threading.Lock()

    @staticmethod
    def load() -> None:
        """Load genai-prices' data now (about 70 ms, on first use otherwise)."""
        from genai_prices import data_snapshot

        data_snapshot.get_snapshot()

    def _model(self, provider_id: str, model: str) -> Any:
        key = (provider_id, model)
        found = self._models.get(key, _MISSING)
        if found is not _MISSING:
            return found
        from genai_prices import data_snapshot

        try:
            found = data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
        except LookupError:
            found = None
        with self._lock:
            self._models[key] = found
        return found

    def cost(
        self,
        provider_id: str | None,
        model: str,
        usage: TokenUsage,
        *,
        service_tier: str | None = None,
    ) -> float | None:
        """The price in USD of `usage` on `model`, or None when genai-prices has no price.

        Cache reads and writes and reasoning tokens are priced at their own
        rates where the model has them. A model whose prices are flat (no
        tiers) is priced from per-token rates worked out once with
        genai-prices (a few microseconds instead of a few hundred); tiered
        prices go through genai-prices every time.

        Fast path: a flat price's rates are held until the model's prices may next
        change (`_next_change`), so a cost within that window skips genai-prices'
        lookup: 2.4 µs -> ~0.6 µs for gpt-4o (timeit, e6f07df). Oracle:
        tests/test_price_windows.py (costs on either side of every change of a day).
        """
        if provider_id is None:
            return None
        return _keyed_cost(self, (provider_id, model, service_tier), usage)

    def _look_up(self, key: tuple[str, str, str | None], usage: TokenUsage) -> float | None:
        """`cost` without held rates: genai-prices' lookup (its own frame: the generator
        below makes a closure cell for each call of the function it is in)."""
        provider_id, model, service_tier = key
        found = self._model(provider_id, model)
        if found is None:  # (`pricer()` gives no pricer for it once this is known)
            return None
        context: Any = {"service_tier": service_tier} if service_tier else None
        clock = self._now()
        now = datetime.fromtimestamp(clock, tz=UTC)
        provider, info = found
        if context and not any(info is m for m in provider.models):
            context = None  # as genai-prices does: variants only apply to the provider's own models
        rates = self._rates(info, provider, info.get_prices(now, context), context, now)
        if rates is None:
            return _calc(info, provider, usage, context, now)
        until = _next_change(info, now)
        if until is not None:
            with self._lock:
                held_rates = self._held
                if len(held_rates) >= MAX_HELD_RATES:  # a client's made-up service tiers
                    del held_rates[next(iter(held_rates))]
                held_rates[key] = (rates, clock, until)
        return rates.apply(usage)

    def held_rates(self, pricer: Callable[[], float | None]) -> tuple[float, ...] | None:
        """The flat rates `pricer` (one `pricer()` gave) would compute its cost with now, when
        they are held: USD for the request and per token of each kind (`_LinearRates.values`,
        what `linear_cost` takes); None when its cost is computed otherwise (a target's own
        price, a tiered price, rates not held now). A request log writes these with the
        request, and its store computes the cost: the request's end computes nothing."""
        if type(pricer) is not partial or pricer.func is not _keyed_cost:
            return None
        book, key, _ = pricer.args
        if book is not self:
            return None
        held = self._held.get(key)
        if held is None or not held[1] <= self._now() < held[2]:
            return None
        values: tuple[float, ...] = held[0].values
        return values

    def _rates(
        self, info: Any, provider: Any, prices: Any, context: Any, now: datetime
    ) -> _LinearRates | None:
        """Per-token rates for flat `prices` (None when a price is tiered)."""
        values = tuple(sorted(prices.__dict__.items()))
        if any(hasattr(v, "tiers") for _, v in values):
            return None
        key = (id(info), values)
        rates = self._linear.get(key)
        if rates is None:
            rates = _LinearRates.derive(lambda u: _calc(info, provider, u, context, now))
            with self._lock:
                self._linear[key] = rates
        return rates

    def rates(self, provider_id: str | None, model: str) -> tuple[float, float] | None:
        """USD per input token and per output token of `model`, or None when unknown.

        Tiered prices (a higher rate past some prompt length) give their base
        tier: the rates are for ranking targets, not for billing.
        """
        if provider_id is None:
            return None
        found = self._model(provider_id, model)
        if found is None:
            return None
        prices = found[1].get_prices(datetime.fromtimestamp(self._now(), tz=UTC))
        rates = (_base(prices.input_mtok), _base(prices.output_mtok))
        if rates[0] is None or rates[1] is None:
            return None
        return rates[0] / 1e6, rates[1] / 1e6

    def forget(self, target: Target) -> None:
        """Drop the memos of a target its catalog forgot (its rates, and its model's
        genai-prices lookup: looked up again if another target uses the model)."""
        self._target_rates.pop(target, None)
        prices_id = target.provider.adapter.prices_id
        if prices_id is not None:
            with self._lock:
                self._models.pop((prices_id, target.model), None)
                for key in [k for k in self._held if k[:2] == (prices_id, target.model)]:
                    del self._held[key]

    def target_rates(self, target: Target) -> tuple[float, float] | None:
        """USD per input and per output token on `target`: its `price`, else genai-prices'
        (None when unknown). Looked up once per target."""
        memo = self._target_rates
        if target in memo:
            return memo[target]
        price = target.price
        if price is not None:
            rates: tuple[float, float] | None = (price.input / 1e6, price.output / 1e6)
        else:
            rates = self.rates(target.provider.adapter.prices_id, target.model)
        self._target_rates[target] = rates
        return rates

    def pricer(
        self,
        target: Target | None,
        usage: TokenUsage | None,
        *,
        service_tier: str | None = None,
    ) -> Callable[[], float | None] | None:
        """A deferred cost of `usage` on `target`: at its own `price` when it has one, else
        genai-prices' (`cost()`); the cost is None for no target.

        None when the cost cannot be known: no usage, or a model genai-prices was found
        to have no price for (a self-hosted one: its cost is None, and nothing is left
        to compute when it is read, as each request's end does with a request log).
        """
        if usage is None:
            return None
        if target is None:
            return _unknown
        own = target.price
        if own is not None:
            return partial(custom_cost, own, usage)
        prices_id = target.provider.adapter.prices_id
        if prices_id is None or self._models.get((prices_id, target.model), _MISSING) is None:
            return None
        return partial(_keyed_cost, self, (prices_id, target.model, service_tier), usage)


def _unknown() -> None:
    return None


def _keyed_cost(
    book: PriceBook, key: tuple[str, str, str | None], usage: TokenUsage
) -> float | None:
    """`PriceBook.cost` of `usage` by (provider, model, service tier): what each pricer of
    genai-prices' calls. A pricer is a partial of this function and its book, so
    `held_rates` knows its own by identity, where a partial of a bound method made one
    method object per request (and one held by the book would keep it in a cycle)."""
    held = book._held.get(key)
    if held is not None and held[1] <= book._now() < held[2]:
        return held[0].apply(usage)
    return book._look_up(key, usage)


def custom_cost(price: PriceConfig, usage: TokenUsage) -> float:
    """The cost in USD of `usage` at a target's configured `price` (USD per million tokens)."""
    cache_read = price.input if price.cache_read is None else price.cache_read
    cache_write = price.input if price.cache_write is None else price.cache_write
    uncached = max(0, usage.input - usage.cache_read - usage.cache_write)
    return (
        uncached * price.input
        + usage.cache_read * cache_read
        + usage.cache_write * cache_write
        + usage.output * price.output
    ) / 1e6


@dataclass(frozen=True, slots=True)
class _LinearRates:
    """A flat price as USD per token of each kind, plus a fixed price per request."""

    fixed: float
    input: float
    cache_read: float
    cache_write: float
    output: float
    reasoning: float

    #: The rates as `linear_cost` takes them, in this order (what `apply` computes, from
    #: plain values): made once, a request log writes them with each request it prices.
    values: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = (self.fixed, self.input, self.cache_read, self.cache_write, self.output,
                  self.reasoning)  # fmt: skip
        object.__setattr__(self, "values", values)

    @classmethod
    def derive(cls, calc: Callable[[TokenUsage], float]) -> _LinearRates:
        """Work the rates out from a price calculator, one kind of token at a time.

        Fast path: a flat-priced cost in 9 µs against 252 µs through genai-prices (timeit,
        2026-12). Oracle: tests/test_fast_paths.py (every flat-priced model).
        """
        n = 1_000_000
        fixed = calc(TokenUsage())
        input_ = calc(TokenUsage(input=n)) - fixed
        output = calc(TokenUsage(output=n)) - fixed
        return cls(
            fixed=fixed,
            input=input_ / n,
            cache_read=(calc(TokenUsage(input=n, cache_read=n)) - fixed) / n,
            cache_write=(calc(TokenUsage(input=n, cache_write=n)) - fixed) / n,
            output=output / n,
            reasoning=(calc(TokenUsage(output=n, reasoning=n)) - fixed) / n,
        )

    def apply(self, usage: TokenUsage) -> float:
        uncached = max(0, usage.input - usage.cache_read - usage.cache_write)
        return (
            self.fixed
            + uncached * self.input
            + usage.cache_read * self.cache_read
            + usage.cache_write * self.cache_write
            + (usage.output - usage.reasoning) * self.output
            + usage.reasoning * self.reasoning
        )


def _calc(info: Any, provider: Any, usage: TokenUsage, context: Any, now: datetime) -> float:
    """genai-prices' own calculation."""
    from genai_prices import Usage

    priced = Usage(
        input_tokens=usage.input,
        cache_read_tokens=usage.cache_read or None,
        cache_write_tokens=usage.cache_write or None,
        output_tokens=usage.output,
        output_reasoning_tokens=usage.reasoning or None,
    )
    result = info.calc_price(priced, provider, genai_request_timestamp=now, price_context=context)
    return float(result.total_price)


def _next_change(info: Any, now: datetime) -> float | None:
    """The first instant after `now` (Unix seconds) at which the prices genai-prices gives
    for model `info` may differ from those at `now`, or None when that cannot be told.

    A start date's price begins at a UTC midnight, and a time-of-day price
    (DeepSeek's off-peak hours) at its start and end times each day; a
    constraint of any other kind (a later genai-prices) is not held at all.
    """
    from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

    today = now.date()
    change = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    conditional = info.prices if isinstance(info.prices, list) else ()
    constraints = [c.constraint for c in conditional]
    constraints += [v.constraint for v in info.price_variants or ()]
    for constraint in constraints:
        if constraint is None or isinstance(constraint, StartDateConstraint):
            continue
        if not isinstance(constraint, TimeOfDateConstraint):
            return None
        for at in (constraint.start_time, constraint.end_time):
            for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
                instant = _instant(day, at)
                if now < instant < change:
                    change = instant
    return change.timestamp()


def _instant(day: date, at: Any) -> datetime:
    """Time of day `at` (naive: UTC) on `day`, as a UTC instant."""
    moment = datetime.combine(day, at)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _base(value: Any) -> float | None:
    """A per-million price as a float; a tiered price's base tier."""
    if value is None:
        return None
    base = getattr(value, "base", value)
    return float(base)
