"""The config models of each provider type (validated strictly: unknown keys are errors)."""

from __future__ import annotations

import math
import random
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SecretStr,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .._units import DURATION_SCHEMA, Duration, PositiveDuration
from ._presets import PRESETS

__all__ = [
    "LatencySpec",
    "MockOutcome",
    "MockProviderConfig",
    "MockToolCall",
    "OpenAIProviderConfig",
    "OpenAIType",
    "ProviderConfigBase",
]


class ProviderConfigBase(BaseModel):
    """Settings every provider has.

    Attributes:
        timeout: the limit of one attempt, and of the silence between two
            chunks of a stream (the route's `timeout` bounds the whole request).
        connect_timeout: the limit for establishing a connection.
        max_connections: the size of this provider's connection pool.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)
    timeout: PositiveDuration = 600.0
    connect_timeout: PositiveDuration = 10.0
    max_connections: int = Field(default=512, ge=1)


OpenAIType = Literal[
    "openai", "groq", "together", "fireworks", "mistral", "deepseek", "xai", "openrouter",
    "perplexity", "cerebras", "ollama", "vllm", "lmstudio",
]  # fmt: skip
assert set(OpenAIType.__args__) == set(PRESETS)  # type: ignore[attr-defined]


class OpenAIProviderConfig(ProviderConfigBase):
    """OpenAI, or an OpenAI-compatible service named by its preset `type`.

    `api_key` defaults to the preset's environment variable and `base_url` to
    the preset's URL. `stream_usage` overrides the preset's knowledge of whether
    the service accepts ``stream_options.include_usage``.
    """

    type: OpenAIType
    api_key: SecretStr | None = None
    base_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    organization: str | None = None
    project: str | None = None
    stream_usage: bool | None = None


class LatencySpec(BaseModel):
    """A latency distribution for the mock provider.

    - ``fixed``: always `value`.
    - ``uniform``: between `min` and `max`.
    - ``normal``: `mean` and `stddev` (clipped at 0).
    - ``lognormal``: `median` and `sigma` (the spread of the log).
    - ``exponential``: `mean`.

    With `tail_rate` > 0, that share of samples is multiplied by `tail_factor`
    (a slow tail, as real providers have).
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)
    distribution: Literal["fixed", "uniform", "normal", "lognormal", "exponential"] = "fixed"
    value: Duration = 0.0
    min: Duration = 0.0
    max: Duration = 0.0
    mean: Duration = 0.0
    stddev: Duration = 0.0
    median: Duration = 0.0
    sigma: float = Field(default=0.5, ge=0)
    tail_rate: float = Field(default=0.0, ge=0, le=1)
    tail_factor: float = Field(default=1.0, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_scalar(cls, data: Any) -> Any:
        if isinstance(data, str | int | float) and not isinstance(data, bool):
            return {"distribution": "fixed", "value": data}
        return data

    @model_validator(mode="after")
    def _check(self) -> LatencySpec:
        if self.distribution == "uniform" and self.max < self.min:
            raise ValueError(f"uniform latency needs min <= max, got {self.min} > {self.max}")
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [*DURATION_SCHEMA["anyOf"], handler(core_schema)]}

    def sample(self, rng: random.Random) -> float:
        """One latency in seconds."""
        kind = self.distribution
        if kind == "fixed":
            value = self.value
        elif kind == "uniform":
            value = rng.uniform(self.min, self.max)
        elif kind == "normal":
            value = max(0.0, rng.gauss(self.mean, self.stddev))
        elif kind == "lognormal":
            value = self.median * math.exp(rng.gauss(0.0, self.sigma)) if self.median else 0.0
        else:
            value = rng.expovariate(1.0 / self.mean) if self.mean else 0.0
        if self.tail_rate and rng.random() < self.tail_rate:
            value *= self.tail_factor
        return value


def _outcome_shorthand(value: Any) -> Any:
    if value == "ok":
        return {}
    if value == "drop":
        return {"drop": True}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"status": value}
    return value


class MockOutcome(BaseModel):
    """One scripted answer of the mock provider.

    Shorthands: ``ok`` (a normal answer), ``drop`` (the connection fails before
    any response), or a bare status code such as ``503``.

    Attributes:
        status: the HTTP status; non-2xx answers carry an OpenAI-style error body.
        error_type: the ``error.type`` of that body (derived from the status if unset).
        code: the ``error.code`` of that body (for example ``context_length_exceeded``).
        message: the ``error.message`` of that body.
        retry_after: sent as ``retry-after`` (seconds) on an error answer.
        headers: extra response headers (rate-limit headers, for example).
        drop: the connection fails before any response.
        cut_after: the connection drops after this many content chunks of a
            stream (or halfway through a non-streamed body).
        latency: overrides the provider's latency for this answer.
        ttft: overrides the provider's time to first token for this answer.
        text: overrides the answer's text.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)
    status: int = Field(default=200, ge=100, le=599)
    error_type: str | None = None
    code: str | None = None
    message: str | None = None
    retry_after: Duration | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    drop: bool = False
    cut_after: int | None = Field(default=None, ge=0)
    latency: LatencySpec | None = None
    ttft: LatencySpec | None = None
    text: str | None = None

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        shorthands = [
            {"enum": ["ok", "drop"]},
            {"type": "integer", "minimum": 100, "maximum": 599, "description": "an HTTP status"},
        ]
        return {"anyOf": [*shorthands, handler(core_schema)]}


class MockToolCall(BaseModel):
    """A tool call the mock answers with when the request offers tools."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class MockProviderConfig(ProviderConfigBase):
    """The simulated provider: an in-process OpenAI-compatible upstream, no network.

    Attributes:
        text: the answer's text (ignored when `echo` is on).
        echo: answer with the text of the last user message.
        latency: time to the whole answer (non-streamed), and the default time
            to first token of a stream.
        ttft: time to the first chunk of a stream.
        chunk_delay: time between chunks of a stream.
        failure_rate: the share of requests answered with `failure_status`.
        failure_status: the status of random failures.
        script: answers given in order, one per request, before the defaults apply.
        repeat_script: start the script again when it runs out.
        seed: seed of the random choices (latency samples, failures).
        models: the models it knows; others get 404 (empty: any model).
        tool_calls: answered when the request offers tools (and tool_choice is not "none").
        prompt_tokens, completion_tokens: fixed usage (counted from the text if unset).
        embedding_dimensions: the length of embedding vectors.
    """

    type: Literal["mock"]
    text: str = "Hello from the llmroute mock provider."
    echo: bool = False
    latency: LatencySpec = Field(default_factory=LatencySpec)
    ttft: LatencySpec | None = None
    chunk_delay: LatencySpec = Field(default_factory=LatencySpec)
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    failure_status: int = Field(default=503, ge=400, le=599)
    script: list[Annotated[MockOutcome, BeforeValidator(_outcome_shorthand)]] = Field(
        default_factory=list
    )
    repeat_script: bool = False
    seed: int | None = None
    models: list[str] = Field(default_factory=list)
    tool_calls: list[MockToolCall] = Field(default_factory=list)
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    embedding_dimensions: int = Field(default=8, ge=1, le=8192)
