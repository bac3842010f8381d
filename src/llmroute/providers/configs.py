"""The config models of each provider type (validated strictly: unknown keys are errors)."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SecretStr,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue, SkipJsonSchema
from pydantic_core import CoreSchema

from .._errors import ConfigError
from .._units import DURATION_SCHEMA, Duration, PositiveDuration
from ._presets import PRESETS

__all__ = [
    "AnthropicProviderConfig",
    "AzureProviderConfig",
    "BedrockProviderConfig",
    "GeminiProviderConfig",
    "LatencySpec",
    "MockOutcome",
    "MockProviderConfig",
    "MockToolCall",
    "OpenAIProviderConfig",
    "OpenAIType",
    "ProviderConfigBase",
    "TokenProvider",
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

    def with_env(self, name: str, env: Mapping[str, str]) -> Self:
        """This config with unset values filled from the environment (see each type)."""
        return self

    @classmethod
    def from_env(cls, type_name: str, env: Mapping[str, str]) -> Self | None:
        """The provider of type `type_name` that zero-config detection registers from
        the environment, if any."""
        return None


OpenAIType = Literal[
    "openai", "groq", "together", "fireworks", "mistral", "deepseek", "xai", "openrouter",
    "perplexity", "cerebras", "ollama", "vllm", "lmstudio",
]  # fmt: skip
assert set(OpenAIType.__args__) == set(PRESETS)  # type: ignore[attr-defined]


class OpenAIProviderConfig(ProviderConfigBase):
    """OpenAI, or an OpenAI-compatible service named by its preset `type`.

    `api_key` defaults to the preset's environment variable and `base_url` to
    the preset's URL. `stream_usage` overrides the preset's knowledge of whether
    the service accepts ``stream_options.include_usage``. `responses_api` says whether
    the service serves OpenAI's Responses API natively (default: only ``openai`` does);
    otherwise a Responses request is translated into a chat completion for it.
    """

    type: OpenAIType
    api_key: SecretStr | None = None
    base_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    organization: str | None = None
    project: str | None = None
    stream_usage: bool | None = None
    responses_api: bool | None = None

    def with_env(self, name: str, env: Mapping[str, str]) -> Self:
        """Fill `api_key` and `base_url` from the preset's environment variables when unset.

        A provider that talks to the service itself (no custom `base_url`) and
        needs a key must have one: its absence is a `ConfigError` naming the
        variable, not a 401 at the first request.
        """
        preset = PRESETS[self.type]
        update: dict[str, Any] = {}
        if self.base_url is None and preset.base_url_env and env.get(preset.base_url_env):
            update["base_url"] = env[preset.base_url_env]
        if self.api_key is None and preset.key_env:
            key = env.get(preset.key_env)
            if key:
                update["api_key"] = SecretStr(key)
            elif self.base_url is None and "base_url" not in update:
                raise ConfigError(
                    f"no API key for provider {name!r}: set {preset.key_env} or give `api_key` "
                    "(a provider with its own `base_url` may go without)",
                    path=f"providers.{name}.api_key",
                )
        return self.model_copy(update=update) if update else self

    @classmethod
    def from_env(cls, type_name: str, env: Mapping[str, str]) -> Self | None:
        """Registered by zero-config detection when the preset's key variable is set."""
        key_env = PRESETS[type_name].key_env
        key = env.get(key_env) if key_env else None
        return cls.model_validate({"type": type_name, "api_key": key}) if key else None


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
        param: the ``error.param`` of that body (the request field blamed).
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
    param: str | None = None
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
        stream_usage: whether llmroute asks for ``stream_options.include_usage``, as
            for an OpenAI-compatible service; off, it plays a service that does not
            accept it (llmroute then estimates a stream's usage).
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
    stream_usage: bool = True


# ---------------------------------------------------------------- vendors with their own API


def _secret(env: Mapping[str, str], *names: str) -> SecretStr | None:
    """The first of the environment variables `names` that is set and non-empty."""
    for variable in names:
        value = env.get(variable)
        if value:
            return SecretStr(value)
    return None


class AnthropicProviderConfig(ProviderConfigBase):
    """Anthropic's Messages API.

    Attributes:
        api_key: the API key; defaults to ``ANTHROPIC_API_KEY``.
        base_url: the API root (``/v1/messages`` is appended); defaults to
            ``ANTHROPIC_BASE_URL``, else ``https://api.anthropic.com``.
        max_tokens: the output cap sent when a request sets neither
            `max_tokens` nor `max_completion_tokens` (Anthropic requires one).
        anthropic_version: the ``anthropic-version`` header.
        betas: ``anthropic-beta`` flags sent with every request.
        structured_output: how ``response_format`` JSON is translated: ``tool``
            (a forced tool; every model) or ``native`` (``output_config.format``;
            the models that offer structured outputs).
        headers: extra headers on every request.
    """

    type: Literal["anthropic"]
    api_key: SecretStr | None = None
    base_url: str | None = None
    max_tokens: int = Field(default=4096, ge=1)
    anthropic_version: str = "2023-06-01"
    betas: list[str] = Field(default_factory=list)
    structured_output: Literal["tool", "native"] = "tool"
    headers: dict[str, str] = Field(default_factory=dict)

    def with_env(self, name: str, env: Mapping[str, str]) -> Self:
        update: dict[str, Any] = {}
        if self.base_url is None and env.get("ANTHROPIC_BASE_URL"):
            update["base_url"] = env["ANTHROPIC_BASE_URL"]
        if self.api_key is None:
            key = _secret(env, "ANTHROPIC_API_KEY")
            if key is not None:
                update["api_key"] = key
            elif self.base_url is None and "base_url" not in update:
                raise ConfigError(
                    f"no API key for provider {name!r}: set ANTHROPIC_API_KEY or give `api_key`",
                    path=f"providers.{name}.api_key",
                )
        return self.model_copy(update=update) if update else self

    @classmethod
    def from_env(cls, type_name: str, env: Mapping[str, str]) -> Self | None:
        """The provider zero-config detection registers when ``ANTHROPIC_API_KEY`` is set."""
        key = _secret(env, "ANTHROPIC_API_KEY")
        return cls(type="anthropic", api_key=key) if key is not None else None


class GeminiProviderConfig(ProviderConfigBase):
    """Google's Gemini API (the Generative Language API, with an API key).

    Attributes:
        api_key: the API key; defaults to ``GEMINI_API_KEY``, else ``GOOGLE_API_KEY``.
        base_url: the API root with its version; ``/models/{model}:generateContent``
            is appended. Defaults to ``https://generativelanguage.googleapis.com/v1beta``.
        headers: extra headers on every request.
    """

    type: Literal["gemini"]
    api_key: SecretStr | None = None
    base_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    def with_env(self, name: str, env: Mapping[str, str]) -> Self:
        if self.api_key is not None:
            return self
        key = _secret(env, "GEMINI_API_KEY", "GOOGLE_API_KEY")
        if key is None:
            if self.base_url is not None:
                return self
            raise ConfigError(
                f"no API key for provider {name!r}: set GEMINI_API_KEY (or GOOGLE_API_KEY) "
                "or give `api_key`",
                path=f"providers.{name}.api_key",
            )
        return self.model_copy(update={"api_key": key})

    @classmethod
    def from_env(cls, type_name: str, env: Mapping[str, str]) -> Self | None:
        """Registered by zero-config detection when ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` is set."""
        key = _secret(env, "GEMINI_API_KEY", "GOOGLE_API_KEY")
        return cls(type="gemini", api_key=key) if key is not None else None


#: Returns a Microsoft Entra ID bearer token (sync or async), as azure-identity's
#: ``get_bearer_token_provider(credential, "https://cognitiveservices.azure.com/.default")``.
TokenProvider = Callable[[], str | Awaitable[str]]


class AzureProviderConfig(ProviderConfigBase):
    """Azure OpenAI: the classic deployment API (with `api_version`) or the v1 API.

    A target's model is the deployment name.

    Attributes:
        endpoint: ``https://{resource}.openai.azure.com``; defaults to ``AZURE_OPENAI_ENDPOINT``.
        api_key: sent as ``api-key``; defaults to ``AZURE_OPENAI_API_KEY``.
        api_version: a dated version (``2024-10-21``) selects the classic
            ``/openai/deployments/{deployment}/...?api-version=`` URLs; unset or
            ``v1`` selects the v1 API (``/openai/v1/...``). Defaults to ``OPENAI_API_VERSION``.
        azure_ad_token: a static Entra ID token, sent as a bearer token;
            defaults to ``AZURE_OPENAI_AD_TOKEN``.
        token_provider: code only (not in config files): a callable returning a
            fresh Entra ID token (sync or async), called before each request; a
            token that is a JWT is reused until shortly before it expires.
        headers: extra headers on every request.
        stream_usage: whether to send ``stream_options.include_usage``.
        responses_api: whether the deployment serves the Responses API natively
            (default true); false translates Responses requests into chat completions.
    """

    type: Literal["azure"]
    endpoint: str | None = None
    api_key: SecretStr | None = None
    api_version: str | None = None
    azure_ad_token: SecretStr | None = None
    token_provider: SkipJsonSchema[TokenProvider | None] = Field(default=None, exclude=True)
    headers: dict[str, str] = Field(default_factory=dict)
    stream_usage: bool = True
    responses_api: bool = True

    def with_env(self, name: str, env: Mapping[str, str]) -> Self:
        update: dict[str, Any] = {}
        if self.endpoint is None and env.get("AZURE_OPENAI_ENDPOINT"):
            update["endpoint"] = env["AZURE_OPENAI_ENDPOINT"]
        if self.api_version is None and env.get("OPENAI_API_VERSION"):
            update["api_version"] = env["OPENAI_API_VERSION"]
        has_token = self.azure_ad_token is not None or self.token_provider is not None
        if self.api_key is None and not has_token:
            key = _secret(env, "AZURE_OPENAI_API_KEY")
            token = _secret(env, "AZURE_OPENAI_AD_TOKEN")
            if key is None and token is None:
                raise ConfigError(
                    f"no credentials for provider {name!r}: set AZURE_OPENAI_API_KEY (or "
                    "AZURE_OPENAI_AD_TOKEN), or give `api_key`, `azure_ad_token` or a "
                    "`token_provider`",
                    path=f"providers.{name}.api_key",
                )
            update["api_key" if key is not None else "azure_ad_token"] = key or token
        if self.endpoint is None and "endpoint" not in update:
            raise ConfigError(
                f"no endpoint for provider {name!r}: set AZURE_OPENAI_ENDPOINT or give `endpoint`",
                path=f"providers.{name}.endpoint",
            )
        return self.model_copy(update=update) if update else self

    @classmethod
    def from_env(cls, type_name: str, env: Mapping[str, str]) -> Self | None:
        """Registered when ``AZURE_OPENAI_ENDPOINT`` and a key or token variable are set."""
        endpoint = env.get("AZURE_OPENAI_ENDPOINT")
        key = _secret(env, "AZURE_OPENAI_API_KEY")
        token = _secret(env, "AZURE_OPENAI_AD_TOKEN")
        if not endpoint or (key is None and token is None):
            return None
        return cls(
            type="azure", endpoint=endpoint, api_key=key, azure_ad_token=None if key else token,
            api_version=env.get("OPENAI_API_VERSION") or None,
        )  # fmt: skip


class BedrockProviderConfig(ProviderConfigBase):
    """AWS Bedrock's Converse API (and InvokeModel for Titan and Cohere embeddings).

    Requests are signed with SigV4 through botocore (``pip install 'llmroute[bedrock]'``)
    using the static keys given here, else the standard AWS credential chain
    (environment, shared files and `profile`, SSO, container and instance roles).
    With a Bedrock API key (`api_key`) requests carry it as a bearer token instead.

    Attributes:
        region: defaults to ``AWS_REGION``, ``AWS_DEFAULT_REGION``, then the profile's region.
        api_key: a Bedrock API key; defaults to ``AWS_BEARER_TOKEN_BEDROCK`` when no
            static keys or profile are configured.
        aws_access_key_id, aws_secret_access_key, aws_session_token: static credentials.
        profile: a named profile of the shared AWS config files.
        base_url: the runtime endpoint (a VPC endpoint, a proxy); defaults to
            ``https://bedrock-runtime.{region}.amazonaws.com``.
        structured_output: how ``response_format`` JSON is translated: ``tool``
            (a forced tool) or ``native`` (``outputConfig.textFormat``).
        headers: extra headers on every request (signed with it).
    """

    type: Literal["bedrock"]
    region: str | None = None
    api_key: SecretStr | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    profile: str | None = None
    base_url: str | None = None
    structured_output: Literal["tool", "native"] = "tool"
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _static_keys_in_pairs(self) -> BedrockProviderConfig:
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ValueError("give both aws_access_key_id and aws_secret_access_key, or neither")
        return self

    def with_env(self, name: str, env: Mapping[str, str]) -> Self:
        update: dict[str, Any] = {}
        if self.region is None:
            region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
            if region:
                update["region"] = region
        chosen = self.aws_access_key_id is not None or self.profile is not None
        if self.api_key is None and not chosen:
            token = _secret(env, "AWS_BEARER_TOKEN_BEDROCK")
            if token is not None:
                update["api_key"] = token
        return self.model_copy(update=update) if update else self

    @classmethod
    def from_env(cls, type_name: str, env: Mapping[str, str]) -> Self | None:
        """Registered when a region and a Bedrock API key or static AWS keys are in the
        environment, and botocore is installed."""
        import importlib.util

        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        has_keys = bool(env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))
        token = _secret(env, "AWS_BEARER_TOKEN_BEDROCK")
        if not region or not (token is not None or has_keys):
            return None
        if importlib.util.find_spec("botocore") is None:
            return None
        if token is not None:
            return cls(type="bedrock", region=region, api_key=token)
        return cls(
            type="bedrock", region=region, aws_access_key_id=_secret(env, "AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=_secret(env, "AWS_SECRET_ACCESS_KEY"),
            aws_session_token=_secret(env, "AWS_SESSION_TOKEN"),
        )  # fmt: skip
