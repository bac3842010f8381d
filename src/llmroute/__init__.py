"""llmroute: an embeddable, in-process LLM gateway with the OpenAI client surface.

from llmroute import Router

router = Router({"routes": {"chat": {"targets": ["openai/gpt-4o-mini", "mock/echo"]}}})
reply = router.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}])
print(reply.choices[0].message.content, reply.llmroute.provider)
"""

from ._clock import Clock, SystemClock
from ._config import Config, HealthConfig, HedgeConfig, RetryConfig, RouteConfig, TargetConfig
from ._errors import (
    AllTargetsFailed,
    AuthenticationError,
    BudgetExceeded,
    ConfigError,
    ContentFiltered,
    ContextLengthExceeded,
    InvalidRequest,
    LLMRouteError,
    LocalRateLimitExceeded,
    MalformedResponse,
    ModelNotFound,
    PermissionDenied,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestError,
    StreamInterrupted,
    UnknownModel,
)
from ._request import CacheControl, RequestOptions
from ._router import AsyncRouter
from ._stream import AsyncChatStream
from ._sync import ChatStream, Router
from ._transport import HttpRequest, HttpResponse, Timeouts, Transport
from ._types import (
    AttemptInfo,
    ChatCompletion,
    ChatCompletionChunk,
    CreateEmbeddingResponse,
    Model,
    ModelList,
    RouteInfo,
    TokenUsage,
)
from .routing.health import TargetHealth
from .routing.stats import TargetStats

__version__ = "0.1.0"

__all__ = [
    "AllTargetsFailed",
    "AsyncChatStream",
    "AsyncRouter",
    "AttemptInfo",
    "AuthenticationError",
    "BudgetExceeded",
    "CacheControl",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatStream",
    "Clock",
    "Config",
    "ConfigError",
    "ContentFiltered",
    "ContextLengthExceeded",
    "CreateEmbeddingResponse",
    "HealthConfig",
    "HedgeConfig",
    "HttpRequest",
    "HttpResponse",
    "InvalidRequest",
    "LLMRouteError",
    "LocalRateLimitExceeded",
    "MalformedResponse",
    "Model",
    "ModelList",
    "ModelNotFound",
    "PermissionDenied",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "RequestError",
    "RequestOptions",
    "RetryConfig",
    "RouteConfig",
    "RouteInfo",
    "Router",
    "StreamInterrupted",
    "SystemClock",
    "TargetConfig",
    "TargetHealth",
    "TargetStats",
    "Timeouts",
    "TokenUsage",
    "Transport",
    "UnknownModel",
    "__version__",
]
