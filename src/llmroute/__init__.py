"""llmroute: an embeddable, in-process LLM gateway with the OpenAI client surface.

from llmroute import Router

router = Router({"routes": {"chat": {"targets": ["openai/gpt-4o-mini", "mock/echo"]}}})
reply = router.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}])
print(reply.choices[0].message.content, reply.llmroute.provider)
"""

import importlib as _importlib
from typing import TYPE_CHECKING
from typing import Any as _Any

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
    QuotaExceeded,
    RateLimited,
    RequestError,
    StreamInterrupted,
    UnknownModel,
)

if TYPE_CHECKING:
    from ._clock import Clock, SystemClock
    from ._config import (
        Config,
        HealthConfig,
        HedgeConfig,
        LoggingConfig,
        RetryConfig,
        RouteConfig,
        TargetConfig,
        TelemetryConfig,
    )
    from ._request import CacheControl, RequestOptions
    from ._router import AsyncRouter
    from ._sync import ChatStream, Router
    from ._transports import (
        ConnectFailed,
        ConnectionLost,
        HandlerResponse,
        HandlerTransport,
        HttpRequest,
        HttpResponse,
        TimedOut,
        Timeouts,
        Transport,
        TransportError,
    )
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
    from .observe.analytics import StatsReport
    from .observe.record import AttemptRecord, RequestRecord
    from .observe.recorder import RecorderStatus
    from .pipeline.stream import AsyncChatStream
    from .routing.health import TargetHealth
    from .routing.stats import TargetStats

# Everything but the errors is imported on first use (PEP 562), so `import llmroute`
# stays cheap for programs that only need it later, or only for its errors.
_LAZY: dict[str, str] = {
    "AsyncChatStream": ".pipeline.stream",
    "AsyncRouter": "._router",
    "AttemptInfo": "._types",
    "AttemptRecord": ".observe.record",
    "CacheControl": "._request",
    "ChatCompletion": "._types",
    "ChatCompletionChunk": "._types",
    "ChatStream": "._sync",
    "Clock": "._clock",
    "Config": "._config",
    "ConnectFailed": "._transports",
    "ConnectionLost": "._transports",
    "CreateEmbeddingResponse": "._types",
    "HandlerResponse": "._transports",
    "HandlerTransport": "._transports",
    "HealthConfig": "._config",
    "HedgeConfig": "._config",
    "HttpRequest": "._transports",
    "HttpResponse": "._transports",
    "LoggingConfig": "._config",
    "Model": "._types",
    "ModelList": "._types",
    "RecorderStatus": ".observe.recorder",
    "RequestOptions": "._request",
    "RequestRecord": ".observe.record",
    "RetryConfig": "._config",
    "RouteConfig": "._config",
    "RouteInfo": "._types",
    "Router": "._sync",
    "StatsReport": ".observe.analytics",
    "SystemClock": "._clock",
    "TargetConfig": "._config",
    "TargetHealth": ".routing.health",
    "TargetStats": ".routing.stats",
    "TelemetryConfig": "._config",
    "TimedOut": "._transports",
    "Timeouts": "._transports",
    "TokenUsage": "._types",
    "Transport": "._transports",
    "TransportError": "._transports",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmroute' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "AllTargetsFailed",
    "AsyncChatStream",
    "AsyncRouter",
    "AttemptInfo",
    "AttemptRecord",
    "AuthenticationError",
    "BudgetExceeded",
    "CacheControl",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatStream",
    "Clock",
    "Config",
    "ConfigError",
    "ConnectFailed",
    "ConnectionLost",
    "ContentFiltered",
    "ContextLengthExceeded",
    "CreateEmbeddingResponse",
    "HandlerResponse",
    "HandlerTransport",
    "HealthConfig",
    "HedgeConfig",
    "HttpRequest",
    "HttpResponse",
    "InvalidRequest",
    "LLMRouteError",
    "LocalRateLimitExceeded",
    "LoggingConfig",
    "MalformedResponse",
    "Model",
    "ModelList",
    "ModelNotFound",
    "PermissionDenied",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "QuotaExceeded",
    "RateLimited",
    "RecorderStatus",
    "RequestError",
    "RequestOptions",
    "RequestRecord",
    "RetryConfig",
    "RouteConfig",
    "RouteInfo",
    "Router",
    "StatsReport",
    "StreamInterrupted",
    "SystemClock",
    "TargetConfig",
    "TargetHealth",
    "TargetStats",
    "TelemetryConfig",
    "TimedOut",
    "Timeouts",
    "TokenUsage",
    "Transport",
    "TransportError",
    "UnknownModel",
    "__version__",
]
