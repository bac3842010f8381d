"""The configuration models. Strict: an unknown key is an error that names its path.

The document's top-level keys are `providers`, `routes`, `cache`,
`rate_limits`, `budgets`, `health`, `state`, `logging`, `telemetry`, `responses`,
`experiments`, `prompts` and `server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ._config_target import Capability, PriceConfig, TargetConfig
from ._units import Duration, PositiveDuration, parse_duration
from .cache.config import CacheConfig, RouteCacheConfig
from .experiments.config import ExperimentConfig, PromptTemplate
from .limits.config import BudgetsConfig, RateLimitsConfig
from .providers import ProviderConfigBase, config_models
from .responses.config import ResponsesConfig
from .server.config import ServerConfig
from .stores.shared_config import SharedStateConfig

__all__ = [
    "Config",
    "FailoverKind",
    "HealthConfig",
    "HedgeConfig",
    "LoggingConfig",
    "Capability",
    "PriceConfig",
    "ProviderConfig",
    "ResponsesConfig",
    "RetryConfig",
    "RouteConfig",
    "SharedStateConfig",
    "TargetConfig",
    "TelemetryConfig",
]

_STRICT = ConfigDict(extra="forbid", defer_build=True)


def _duration_or_p95(value: object) -> object:
    return value if value == "p95" else parse_duration(value)


if TYPE_CHECKING:
    ProviderConfig = ProviderConfigBase
else:
    #: One member per config model of the provider registry, told apart by `type`.
    ProviderConfig = Annotated[Union[config_models()], Field(discriminator="type")]  # noqa: UP007


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


FailoverKind = Literal[
    "authentication", "permission", "model_not_found", "context_length", "quota",
    "content_filter", "invalid_request",
]  # fmt: skip


#: The fatal errors that fail over by default: they say "not this target".
DEFAULT_FAILOVER: tuple[FailoverKind, ...] = (
    "authentication", "permission", "model_not_found", "context_length", "quota",
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
        strategy: how the targets are ordered for each request: ``ordered``
            (as listed), ``weighted``, ``round_robin``, ``least_busy``,
            ``latency``, ``cost``, or the name of a strategy given to the
            router in code.
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
        max_cost_per_request: skip targets whose expected cost (USD) is higher.
        max_latency: skip targets whose observed p95 latency (time to first
            token for streams) is higher, while others are eligible.
        unknown_price: how targets without a known price are treated where
            prices matter (the ``cost`` strategy, `max_cost_per_request`):
            ``last`` (after the priced ones) or ``exclude``. Required there
            when a target has no price: never silently priced at 0.
        explore: the ``latency`` strategy's share of random first choices.
        cache: the route's own cache settings (see `RouteCacheConfig`); the
            top-level `cache` section's when unset.
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
    max_cost_per_request: float | None = Field(default=None, gt=0)
    max_latency: PositiveDuration | None = None
    unknown_price: Literal["last", "exclude"] | None = None
    explore: float = Field(default=0.05, ge=0, le=1)
    cache: RouteCacheConfig | None = None


#: The URL prefixes of the log stores.
STORE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


class LoggingConfig(BaseModel):
    """The request log: where records are stored, and what they hold.

    Attributes:
        store: the queryable store: ``sqlite:///path`` (a relative path is
            relative to the working directory) or ``postgresql://user:pass@host/db``
            (needs the ``postgres`` extra); null for none.
        retention: delete records (with their attempts, properties and feedback)
            older than this from the store, and its minute rollups; hour and day
            rollups are kept. Null: keep everything.
        sinks: more destinations for every record, by URL
            (``jsonl:///path/to/file.jsonl``, ``sqlite:///other.db``).
        capture_content: record prompts and completions (off by default;
            a request's ``capture_content`` option overrides it).
        queue_size: records waiting to be written at most; more are dropped
            (and counted) rather than slowing requests.
        batch_size: records written in one transaction at most.
        flush_interval: the longest a record waits before it is written; with
            `batch_size` it bounds what a killed process loses.
        writer: where a SQLite store's batches are written: ``process`` (a
            child process per store, so the SQLite work takes no CPU from the
            router's process; falls back to ``inline`` when no process can be
            started) or ``inline`` (the recorder's worker thread).
    """

    model_config = _STRICT
    store: str | None = "sqlite:///llmroute.db"
    retention: PositiveDuration | None = None
    sinks: list[str] = Field(default_factory=list)
    capture_content: bool = False
    queue_size: int = Field(default=10_000, ge=1)
    batch_size: int = Field(default=2000, ge=1)
    flush_interval: PositiveDuration = 0.2
    writer: Literal["process", "inline"] = "process"

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(STORE_SCHEMES):
            raise ValueError(
                f"expected a 'sqlite:///path' or 'postgresql://...' URL, got {value[:60]!r}"
            )
        return value

    @field_validator("sinks")
    @classmethod
    def _known_sinks(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith((*STORE_SCHEMES, "jsonl:///")):
                raise ValueError(
                    "expected a 'sqlite:///path', 'postgresql://...' or 'jsonl:///path' URL, "
                    f"got {url[:60]!r}"
                )
        return value


class TelemetryConfig(BaseModel):
    """OpenTelemetry traces and metrics (through the API: a no-op until an SDK is installed).

    Attributes:
        enabled: emit a span per request (with a child per attempt) and the
            GenAI client metrics.
    """

    model_config = _STRICT
    enabled: bool = True


class Config(BaseModel):
    """A whole llmroute configuration.

    Attributes:
        providers: provider name -> provider settings (its `type` says which kind).
        routes: route name -> route. Requests name a route with `model=`.
        cache: the response cache (see `llmroute.cache.CacheConfig`); off when unset.
        rate_limits: rate-limit rules (see `llmroute.limits.RateLimitsConfig`).
        budgets: spending budgets (see `llmroute.limits.BudgetsConfig`).
        health: circuit breaking and cooldowns (see `HealthConfig`).
        state: circuit state and cooldowns shared through Redis with every router
            naming the same Redis (see `llmroute.stores.shared_config.SharedStateConfig`);
            each router's own when unset.
        logging: the request log (see `LoggingConfig`); no store when unset.
        telemetry: OpenTelemetry traces and metrics (see `TelemetryConfig`).
        responses: the Responses API's conversation state (see
            `llmroute.responses.config.ResponsesConfig`); in memory by default.
        experiments: A/B tests on routes, by name (see
            `llmroute.experiments.config.ExperimentConfig`, docs/experiments.md).
        prompts: named prompt templates experiments' variants use, by name: a system
            prompt with ``{variables}`` filled in per request.
        server: the HTTP gateway run by ``llmroute serve`` (see `llmroute.server.ServerConfig`).
    """

    model_config = _STRICT
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    cache: CacheConfig | None = None
    rate_limits: RateLimitsConfig | None = None
    budgets: BudgetsConfig | None = None
    health: HealthConfig = Field(default_factory=HealthConfig)
    state: SharedStateConfig | None = None
    logging: LoggingConfig | None = None
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    experiments: dict[str, ExperimentConfig] = Field(default_factory=dict)
    prompts: dict[str, PromptTemplate] = Field(default_factory=dict)
    server: ServerConfig | None = None

    @field_validator("providers", "routes")
    @classmethod
    def _no_slash_in_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if "/" in name or not name:
                raise ValueError(f"name {name!r} must be non-empty and contain no '/'")
        return value

    @model_validator(mode="after")
    def _state_backend(self) -> Config:
        """`state.backend` naming a section: that section's Redis URL."""
        state = self.state
        if state is None or "://" in state.backend:
            return self
        section = getattr(self, state.backend)
        url = section.backend if section is not None else None
        if url is None or url.startswith("memory://"):
            raise ValueError(
                f"state.backend: {state.backend!r} names the Redis of the {state.backend} "
                f"section, which {'uses memory://' if url else 'is not configured'}"
            )
        state.backend = url
        return self
