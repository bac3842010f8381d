"""llmroute's own information about a request: `RouteInfo`, its `AttemptInfo`s, `TokenUsage`.

It rides beside the OpenAI-shaped fields of a response (`llmroute._types`) as
the typed ``llmroute`` attribute, never mixed into them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from os import urandom
from time import time_ns
from typing import Literal

__all__ = [
    "AttemptInfo", "AttemptKind", "AttemptOutcome", "CacheStatus", "RouteInfo", "TokenUsage",
]  # fmt: skip


#: The last millisecond a request id was made in, and the id's prefix for it (`new_request_id`).
_made: tuple[int, str] = (0, "")


def new_request_id() -> str:
    """A request id: ``lr-``, the Unix time in milliseconds (12 hex digits) and 64 random
    bits from the OS (16 hex digits). Unique across forked workers and out of reach of
    `random.seed()` (which would make ids repeat); ordered by time, so a request log's
    key indexes (and the attempts and properties, kept in request-id order) grow at
    their end: with random ids each insert went to a random page, and a SQLite log's
    writer cost 28.9 µs a record over its first 50,000 and 37.5 µs by 200,000, against a
    flat 24.3 µs ordered. The prefix is made once a millisecond (0.54 against 0.41 µs an
    id for 24 random hex digits, timeit, best of 5, 2026-12-05)."""
    global _made
    now = time_ns() // 1_000_000
    made = _made
    if made[0] != now:  # (threads racing here each make a correct prefix)
        made = _made = (now, f"lr-{now:012x}")
    return made[1] + urandom(8).hex()


@dataclass(slots=True)
class TokenUsage:
    """Token counts normalised the OpenTelemetry way.

    `input` includes cached tokens; `cache_read` and `cache_write` are parts of
    it. `reasoning` is part of `output`. `estimated` is true when the provider
    did not report usage and llmroute counted it itself.
    """

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    estimated: bool = False

    @property
    def total(self) -> int:
        """Input plus output tokens."""
        return self.input + self.output


AttemptOutcome = Literal["ok", "error", "cancelled"]
AttemptKind = Literal["first", "retry", "fallback", "hedge"]


@dataclass(slots=True)
class AttemptInfo:
    """One try of one target: what was sent where, and how it ended.

    `kind` says why it was sent: the ``first`` try, a ``retry`` of a target
    already tried, a ``fallback`` to another target, or a ``hedge`` racing a
    slow attempt. `circuit` is the target's circuit state when it was admitted.
    `started` is when it was sent, on llmroute's monotonic clock (the clock
    `latency_s` is measured on; only differences between readings mean anything).
    `headers` are the provider's response headers, as its HTTP engine gave them (a
    case-insensitive mapping; None when no response arrived): kept by reference, so
    keeping them costs the request nothing.
    """

    target: str
    provider: str
    model: str
    kind: AttemptKind
    outcome: AttemptOutcome = "ok"
    status: int | None = None
    error_type: str | None = None
    error: str | None = None
    latency_s: float = 0.0
    circuit: str = "closed"
    started: float | None = None
    headers: Mapping[str, str] | None = field(default=None, repr=False)


CacheStatus = Literal["hit", "miss", "bypass"]


@dataclass(slots=True)
class RouteInfo:
    """What llmroute did for one request.

    Available as `.llmroute` on every response and on every stream. For a
    stream, `ttft_s`, `latency_s`, `usage` and `cost_usd` are filled in as the
    stream progresses and are final once it has ended.

    `cache` is ``hit``, ``miss`` or ``bypass`` when a cache applies to the
    route (None otherwise). A hit costs nothing (`cost_usd` is 0 and `usage`
    None); `saved_tokens` and `saved_usd` are what the original answer used
    and cost.

    `experiment` and `variant` name the experiment the request took part in
    and the variant it got (None when its route runs none, or outside the
    experiment's window); see docs/experiments.md.
    """

    request_id: str
    route: str | None = None
    strategy: str | None = None
    target: str | None = None
    provider: str | None = None
    model: str | None = None
    attempts: list[AttemptInfo] = field(default_factory=list)
    cache: CacheStatus | None = None
    usage: TokenUsage | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    stream: bool = False
    saved_tokens: TokenUsage | None = None
    saved_usd: float | None = None
    experiment: str | None = None
    variant: str | None = None
    _cost: float | None = field(default=None, repr=False)
    _pricer: Callable[[], float | None] | None = field(default=None, repr=False)
    #: The explanation, or until first read what it is made of: (strategy, reason or its
    #: maker), a tuple rather than a closure (a function object less per request).
    _reason: str | tuple[str, str | Callable[[], str]] | None = field(default=None, repr=False)
    #: The attempt whose answer was delivered (with hedging, not always the last one).
    served: AttemptInfo | None = field(default=None, repr=False)

    @property
    def provider_headers(self) -> Mapping[str, str] | None:
        """The response headers of the provider whose answer was delivered (the served
        attempt's `AttemptInfo.headers`); None when no provider answered (a cache hit, a
        stage's answer)."""
        served = self.served
        return served.headers if served is not None else None

    @property
    def reason(self) -> str | None:
        """Why the target was chosen: the strategy, what it compared, what it skipped."""
        reason = self._reason
        if isinstance(reason, tuple):
            strategy, made = reason
            reason = self._reason = f"{strategy}: " + (made() if callable(made) else made)
        return reason

    @property
    def has_reason(self) -> bool:
        """Whether a selection has been explained yet."""
        return self._reason is not None

    def set_reason(self, strategy: str, reason: str | Callable[[], str]) -> None:
        """Record the selection's explanation (formatted on first read)."""
        self._reason = (strategy, reason)

    @property
    def cost_usd(self) -> float | None:
        """The cost of the request in US dollars; None when unknown (never guessed as 0).

        Computed from genai-prices on first access, so pricing never slows the
        request itself.
        """
        pricer = self._pricer
        if pricer is not None:
            self._pricer = None
            self._cost = pricer()
        return self._cost

    def pending_cost(self) -> Callable[[], float | None] | None:
        """What computes `cost_usd` on its first read (None once it is computed: read
        `cost_usd`). A recorder calls it off the request path, without keeping this
        object (and what it holds) alive until then."""
        return self._pricer

    def set_cost(self, pricer: Callable[[], float | None] | None) -> None:
        """Set how the cost is computed (called once the usage is final)."""
        self._pricer = pricer
        self._cost = None
