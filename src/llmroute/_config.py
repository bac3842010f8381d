"""The configuration models. Strict: an unknown key is an error that names its path.

The document's top-level keys are `providers`, `routes`, `cache`,
`rate_limits`, `budgets`, `health`, `logging`, `telemetry`, `experiments` and
`server`. Sections whose feature has not been built yet are refused with a
clear "not supported yet" error rather than silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from ._units import Duration, PositiveDuration, parse_duration
from .providers._configs import MockProviderConfig, OpenAIProviderConfig

__all__ = [
    "Config",
    "FailoverKind",
    "HealthConfig",
    "HedgeConfig",
    "ProviderConfig",
    "RetryConfig",
    "RouteConfig",
    "TargetConfig",
]

_STRICT = ConfigDict(extra="forbid", defer_build=True)


def _duration_or_p95(value: object) -> object:
    return value if value == "p95" else parse_duration(value)


ProviderConfig = Annotated[OpenAIProviderConfig | MockProviderConfig, Field(discriminator="type")]

#: Strategies of the smart-selection work that are not available yet.
_PLANNED_STRATEGIES = frozenset({"weighted", "round_robin", "least_busy", "latency", "cost"})


class RetryConfig(BaseModel):
    """How a route retries.

    The route's targets are tried in order; that pass is one round. When a
    round ends without an answer, the next round starts after a backoff delay,
    up to `attempts` rounds. So a lone target is tried `attempts` times, and
    a route of several fails over at once before any waiting.

    Attributes:
        attempts: the number of rounds over the route's targets.
        backoff: ``exponential`` (with full jitter) or ``constant``.
        initial: the first delay (and every delay for ``constant``).
        max_delay: the cap on one delay.
    """

    model_config = _STRICT
    attempts: int = Field(default=2, ge=1, le=20)
    backoff: Literal["exponential", "constant"] = "exponential"
    initial: Duration = 0.25
    max_delay: Duration = 8.0


class HealthConfig(BaseModel):
    """How target health is tracked (circuit breaking and Retry-After cooldowns).

    Attributes:
        window: the span of the rolling error ratio.
        min_requests: outcomes the window must hold before the circuit may open.
        error_threshold: the failure share (0-1] that opens the circuit.
        cooldown: how long a circuit first stays open; doubles on each re-open.
        max_cooldown: the cap on that cooldown.
        half_open_probes: requests let through at once while half-open.
        max_retry_after: the cap on a cooldown asked for by ``Retry-After`` or a
            rate-limit reset.
        when_unavailable: when every target of a request is open or cooling
            down: ``wait`` for the first to come back if the request's deadline
            allows, or ``fail`` at once.
    """

    model_config = _STRICT
    window: PositiveDuration = 30.0
    min_requests: int = Field(default=10, ge=1)
    error_threshold: float = Field(default=0.5, gt=0, le=1)
    cooldown: PositiveDuration = 10.0
    max_cooldown: PositiveDuration = 300.0
    half_open_probes: int = Field(default=1, ge=1)
    max_retry_after: PositiveDuration = 300.0
    when_unavailable: Literal["wait", "fail"] = "wait"


class TargetConfig(BaseModel):
    """One provider and model a route can send to; the string ``"provider/model"`` is shorthand."""

    model_config = _STRICT
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0)
    context_window: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            provider, slash, model = data.partition("/")
            if not slash or not provider or not model:
                raise ValueError(f"expected 'provider/model', got {data!r}")
            return {"provider": provider, "model": model}
        return data

    @property
    def key(self) -> str:
        """The target's name, ``provider/model``."""
        return f"{self.provider}/{self.model}"

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        table = handler(core_schema)
        shorthand = {"type": "string", "pattern": "^[^/]+/.+$", "description": "provider/model"}
        return {"anyOf": [shorthand, table]}


FailoverKind = Literal[
    "authentication", "permission", "model_not_found", "context_length", "content_filter",
    "invalid_request",
]  # fmt: skip


#: The fatal errors that fail over by default: they say "not this target".
DEFAULT_FAILOVER: tuple[FailoverKind, ...] = (
    "authentication", "permission", "model_not_found", "context_length",
)  # fmt: skip


class HedgeConfig(BaseModel):
    """Hedged requests: a second attempt when the first is slow to start.

    Attributes:
        after: start a hedge when the first attempt has produced no first
            token (streams) or no answer (non-streams) after this long; ``p95``
            means the target's observed 95th percentile time to first token
            (no hedge until it has samples).
        max_extra: at most this many extra attempts run beside the first.
    """

    model_config = _STRICT
    after: Annotated[float, BeforeValidator(_duration_or_p95)] | Literal["p95"]
    max_extra: int = Field(default=1, ge=1, le=3)


class RouteConfig(BaseModel):
    """A named route: the targets a `model=` name sends to, and how.

    Attributes:
        strategy: how the targets are ordered for each request (``ordered``:
            as listed, the first is the primary and the rest its fallbacks).
        targets: the targets, as ``provider/model`` strings or tables.
        fallbacks: routes tried in order after every target of this one failed.
        retry: rounds and backoff (see `RetryConfig`).
        timeout: the deadline of a whole request on this route, across every
            attempt and wait.
        attempt_timeout: the limit of one attempt: connecting, the first
            token (streams) and the whole answer (non-streams); the provider's
            `timeout` applies when unset.
        idle_timeout: the longest silence between two chunks of a stream
            before it counts as interrupted (the provider's `timeout` when unset).
        failover_on: the fatal errors that move on to the next target rather
            than end the request (retryable errors always move on).
        mid_stream: what a stream failure after content does: ``error`` raises
            `StreamInterrupted`; ``continue`` asks the next target to continue
            the answer and stitches it into the same stream.
        hedge: hedged requests (see `HedgeConfig`); off when unset.
    """

    model_config = _STRICT
    strategy: str = "ordered"
    targets: list[TargetConfig] = Field(min_length=1)
    fallbacks: list[str] = Field(default_factory=list)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeout: PositiveDuration = 600.0
    attempt_timeout: PositiveDuration | None = None
    idle_timeout: PositiveDuration | None = None
    failover_on: list[FailoverKind] = Field(default_factory=lambda: list(DEFAULT_FAILOVER))
    mid_stream: Literal["error", "continue"] = "error"
    hedge: HedgeConfig | None = None

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value == "ordered":
            return value
        if value in _PLANNED_STRATEGIES:
            raise ValueError(f"strategy {value!r} is not supported yet; use 'ordered'")
        raise ValueError(f"unknown strategy {value!r}; expected 'ordered'")


#: A top-level section whose feature is not built yet: only null is accepted.
Unbuilt = Annotated[
    Any, WithJsonSchema({"type": "null", "description": "not supported yet by this version"})
]

_UNBUILT_SECTIONS = (
    "cache", "rate_limits", "budgets", "logging", "telemetry", "experiments", "server",
)  # fmt: skip


class Config(BaseModel):
    """A whole llmroute configuration.

    Attributes:
        providers: provider name -> provider settings (its `type` says which kind).
        routes: route name -> route. Requests name a route with `model=`.
    """

    model_config = _STRICT
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    cache: Unbuilt = None
    rate_limits: Unbuilt = None
    budgets: Unbuilt = None
    health: HealthConfig = Field(default_factory=HealthConfig)
    logging: Unbuilt = None
    telemetry: Unbuilt = None
    experiments: Unbuilt = None
    server: Unbuilt = None

    @field_validator(*_UNBUILT_SECTIONS)
    @classmethod
    def _refuse_unbuilt(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(
                "this section is not supported yet by this llmroute version; remove it "
                "(it would otherwise be silently ignored)"
            )
        return value

    @field_validator("providers", "routes")
    @classmethod
    def _no_slash_in_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if "/" in name or not name:
                raise ValueError(f"name {name!r} must be non-empty and contain no '/'")
        return value
