"""Request cost from genai-prices, looked up once per model and computed lazily.

genai-prices takes a few hundred microseconds per calculation and a third of a
second to import, so llmroute never prices inside the request: a response's
`cost_usd` is computed the first time someone reads it (the caller, or the
recorder off the hot path). Unknown models cost None, never 0.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ._types import TokenUsage

__all__ = ["PriceBook"]

_MISSING = object()


class PriceBook:
    """Prices requests; caches the model lookups of one router."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

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
        """The price in USD of `usage` on `model`, or None when genai-prices has no price."""
        if provider_id is None:
            return None
        found = self._model(provider_id, model)
        if found is None:
            return None
        from genai_prices import Usage

        provider, info = found
        priced = Usage(
            input_tokens=usage.input,
            cache_read_tokens=usage.cache_read or None,
            cache_write_tokens=usage.cache_write or None,
            output_tokens=usage.output,
        )
        context: Any = {"service_tier": service_tier} if service_tier else None
        result = info.calc_price(
            priced, provider, genai_request_timestamp=datetime.now(tz=UTC), price_context=context
        )
        return float(result.total_price)

    def pricer(
        self,
        provider_id: str | None,
        model: str,
        usage: TokenUsage | None,
        *,
        service_tier: str | None = None,
    ) -> Callable[[], float | None] | None:
        """A deferred `cost()` call, or None when the cost cannot be known."""
        if provider_id is None or usage is None:
            return None
        return lambda: self.cost(provider_id, model, usage, service_tier=service_tier)
