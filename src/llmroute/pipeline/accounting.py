"""A served request's usage and cost, as `RouteInfo` reports them."""

from __future__ import annotations

from .._config import PriceConfig
from .._prices import PriceBook
from .._request import ChatRequest
from .._tokens import estimate_request_tokens, estimate_text_tokens
from .._types import CompletionUsage, RouteInfo, TokenUsage
from ..routing.catalog import Route, Target

__all__ = ["set_cost", "stream_usage"]


def set_cost(
    prices: PriceBook,
    route: Route,
    info: RouteInfo,
    served: Target,
    usage: TokenUsage | None,
    tier: str | None,
) -> None:
    """Give `info` its cost: computed when first read, so pricing never slows the request.

    The price a route's config gives the served target's key wins over
    genai-prices; it is looked up along the route's chain (the first target
    with that key), as when only the key was known.
    """
    key = served.key

    def own_price() -> PriceConfig | None:  # looked up when the cost is first read
        for one in route.chain():
            for target in one.targets:
                if target.key == key:
                    return target.price
        return None

    info.set_cost(
        prices.pricer(
            served.provider.adapter.prices_id,
            served.model,
            usage,
            service_tier=tier,
            override=own_price,
        )
    )


def stream_usage(
    request: ChatRequest, reported: CompletionUsage | None, text: str, continued: bool
) -> TokenUsage:
    """A finished stream's usage: what the provider reported, else an estimate.

    A continued stream is estimated too: each target reported only its own part.
    """
    if reported is not None and not continued:
        return reported.normalised()
    return TokenUsage(
        input=estimate_request_tokens(request),
        output=estimate_text_tokens(text),
        estimated=True,
    )
