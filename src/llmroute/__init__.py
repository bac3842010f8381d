"""llmroute: an embeddable, in-process LLM gateway with the OpenAI client surface.

from llmroute import Router

router = Router({"routes": {"chat": {"targets": ["openai/gpt-4o-mini", "mock/echo"]}}})
reply = router.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}])
print(reply.choices[0].message.content, reply.llmroute.provider)
"""

from typing import TYPE_CHECKING

from . import _errors
from ._errors import AllTargetsFailed as AllTargetsFailed
from ._errors import AuthenticationError as AuthenticationError
from ._errors import BudgetExceeded as BudgetExceeded
from ._errors import ConfigError as ConfigError
from ._errors import ContentFiltered as ContentFiltered
from ._errors import ContentFilterFinishReasonError as ContentFilterFinishReasonError
from ._errors import ContextLengthExceeded as ContextLengthExceeded
from ._errors import InvalidRequest as InvalidRequest
from ._errors import LengthFinishReasonError as LengthFinishReasonError
from ._errors import LLMRouteError as LLMRouteError
from ._errors import LocalRateLimitExceeded as LocalRateLimitExceeded
from ._errors import MalformedResponse as MalformedResponse
from ._errors import ModelNotFound as ModelNotFound
from ._errors import PermissionDenied as PermissionDenied
from ._errors import ProviderConnectionError as ProviderConnectionError
from ._errors import ProviderError as ProviderError
from ._errors import ProviderTimeout as ProviderTimeout
from ._errors import ProviderUnavailable as ProviderUnavailable
from ._errors import QuotaExceeded as QuotaExceeded
from ._errors import RateLimited as RateLimited
from ._errors import RequestError as RequestError
from ._errors import ResponseNotFound as ResponseNotFound
from ._errors import StreamInterrupted as StreamInterrupted
from ._errors import UnknownModel as UnknownModel
from ._errors import UnknownRequest as UnknownRequest
from ._lazy import exports as _exports
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from ._clock import Clock as Clock
    from ._clock import SystemClock as SystemClock
    from ._config import Config as Config
    from ._config import HealthConfig as HealthConfig
    from ._config import HedgeConfig as HedgeConfig
    from ._config import LoggingConfig as LoggingConfig
    from ._config import RetryConfig as RetryConfig
    from ._config import RouteConfig as RouteConfig
    from ._config import TargetConfig as TargetConfig
    from ._config import TelemetryConfig as TelemetryConfig
    from ._openai_errors import openai_errors as openai_errors
    from ._openai_errors import to_openai_error as to_openai_error
    from ._request import CacheControl as CacheControl
    from ._request import RequestOptions as RequestOptions
    from ._responses import RawResponse as RawResponse
    from ._router import AsyncRouter as AsyncRouter
    from ._structured import ParsedChatCompletion as ParsedChatCompletion
    from ._sync import ChatStream as ChatStream
    from ._sync import Router as Router
    from ._transports import ConnectFailed as ConnectFailed
    from ._transports import ConnectionLost as ConnectionLost
    from ._transports import HandlerResponse as HandlerResponse
    from ._transports import HandlerTransport as HandlerTransport
    from ._transports import HttpRequest as HttpRequest
    from ._transports import HttpResponse as HttpResponse
    from ._transports import TimedOut as TimedOut
    from ._transports import Timeouts as Timeouts
    from ._transports import Transport as Transport
    from ._transports import TransportError as TransportError
    from ._types import AttemptInfo as AttemptInfo
    from ._types import ChatCompletion as ChatCompletion
    from ._types import ChatCompletionChunk as ChatCompletionChunk
    from ._types import CreateEmbeddingResponse as CreateEmbeddingResponse
    from ._types import Model as Model
    from ._types import ModelList as ModelList
    from ._types import RouteInfo as RouteInfo
    from ._types import TokenUsage as TokenUsage
    from ._views import ProviderView as ProviderView
    from ._views import RouteView as RouteView
    from ._views import TargetView as TargetView
    from .experiments.report import ExperimentReport as ExperimentReport
    from .observe.analytics import StatsReport as StatsReport
    from .observe.feedback import Feedback as Feedback
    from .observe.record import AttemptRecord as AttemptRecord
    from .observe.record import RequestRecord as RequestRecord
    from .observe.status import RecorderStatus as RecorderStatus
    from .pipeline.stage import Ended as Ended
    from .pipeline.stage import Outcome as Outcome
    from .pipeline.stage import RequestContext as RequestContext
    from .pipeline.stage import Stage as Stage
    from .pipeline.stream import AsyncChatStream as AsyncChatStream
    from .routing.health import TargetHealth as TargetHealth
    from .routing.stats import TargetStats as TargetStats
    from .stores.shared_config import SharedStateConfig as SharedStateConfig
    from .stores.shared_state import SharedStateStatus as SharedStateStatus


# Everything but the errors is imported on first use (PEP 562, see `_lazy`), so
# `import llmroute` stays cheap for programs that only need it later, or only
# for its errors. Each lazy name is listed here once, and above for type checkers.
_EXPORTS: dict[str, str] = {
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
    "Ended": ".pipeline.stage",
    "ExperimentReport": ".experiments.report",
    "Feedback": ".observe.feedback",
    "HandlerResponse": "._transports",
    "HandlerTransport": "._transports",
    "HealthConfig": "._config",
    "HedgeConfig": "._config",
    "HttpRequest": "._transports",
    "HttpResponse": "._transports",
    "Outcome": ".pipeline.stage",
    "ParsedChatCompletion": "._structured",
    "RawResponse": "._responses",
    "openai_errors": "._openai_errors",
    "to_openai_error": "._openai_errors",
    "ProviderView": "._views",
    "RequestContext": ".pipeline.stage",
    "RouteView": "._views",
    "Stage": ".pipeline.stage",
    "TargetView": "._views",
    "LoggingConfig": "._config",
    "Model": "._types",
    "ModelList": "._types",
    "RecorderStatus": ".observe.status",
    "RequestOptions": "._request",
    "RequestRecord": ".observe.record",
    "RetryConfig": "._config",
    "RouteConfig": "._config",
    "RouteInfo": "._types",
    "Router": "._sync",
    "SharedStateConfig": ".stores.shared_config",
    "SharedStateStatus": ".stores.shared_state",
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


__getattr__, __dir__, __all__ = _exports(
    __name__, _EXPORTS, eager=[*_errors.__all__, "__version__"]
)
