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
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from ._units import Duration, PositiveDuration
from .providers._configs import MockProviderConfig, OpenAIProviderConfig

__all__ = [
    "Config",
    "ProviderConfig",
    "RetryConfig",
    "RouteConfig",
    "TargetConfig",
]

_STRICT = ConfigDict(extra="forbid", defer_build=True)

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


class TargetConfig(BaseModel):
    """One provider and model a route can send to; the string ``"provider/model"`` is shorthand."""

    model_config = _STRICT
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0)

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
    """

    model_config = _STRICT
    strategy: str = "ordered"
    targets: list[TargetConfig] = Field(min_length=1)
    fallbacks: list[str] = Field(default_factory=list)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeout: PositiveDuration = 600.0

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
    "cache", "rate_limits", "budgets", "health", "logging", "telemetry", "experiments", "server",
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
    health: Unbuilt = None
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
