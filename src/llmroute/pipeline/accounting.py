"""A served request's usage and cost, as `RouteInfo` reports them."""

from __future__ import annotations

from .._prices import PriceBook
from .._request import ChatRequest
from .._tokens import estimate_request_tokens, estimate_text_tokens
from .._types import CompletionUsage, RouteInfo, TokenUsage
from ..routing.model import Target

__all__ = ["set_cost", "stream_usage"]


def set_cost(
    prices: PriceBook, info: RouteInfo, served: Target, usage: TokenUsage | None, tier: str | None
) -> None:
    """Give `info` its cost: computed when first read, so pricing never slows the request.

    The served target's own `price` wins over genai-prices (`PriceBook.pricer`):
    the target that answered, not the first target with its key along the route's
    chain, so a fallback that prices the same model differently is billed at its own price.
    """
    info.set_cost(prices.pricer(served, usage, service_tier=tier))


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
