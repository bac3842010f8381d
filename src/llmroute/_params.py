"""The keyword arguments of `create()`, typed once for the async and the blocking client."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol, Required, TypedDict, runtime_checkable

from ._errors import RequestError
from ._request import RequestOptions

__all__ = [
    "ChatCreateParams",
    "ChatParams",
    "ChatParseParams",
    "ClientOnlyParams",
    "EmbeddingsCreateParams",
    "TimeoutLike",
    "given",
    "is_sentinel",
    "split_client_params",
    "timeout_seconds",
]


class ChatParams(TypedDict, total=False):
    """The Chat Completions parameters `create`, `parse` and `stream` share."""

    model: Required[str]
    messages: Required[Iterable[Mapping[str, Any]]]
    stream_options: Mapping[str, Any] | None
    tools: Iterable[Mapping[str, Any]] | None
    tool_choice: str | Mapping[str, Any] | None
    parallel_tool_calls: bool | None
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    max_completion_tokens: int | None
    stop: str | list[str] | None
    n: int | None
    seed: int | None
    user: str | None
    logprobs: bool | None
    top_logprobs: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    logit_bias: Mapping[str, float] | None
    reasoning_effort: str | None
    service_tier: str | None
    metadata: Mapping[str, str] | None
    store: bool | None
    prompt_cache_key: str | None
    safety_identifier: str | None
    modalities: list[str] | None
    audio: Mapping[str, Any] | None
    prediction: Mapping[str, Any] | None
    verbosity: str | None
    web_search_options: Mapping[str, Any] | None
    moderation: Mapping[str, Any] | None
    prompt_cache_options: Mapping[str, Any] | None
    prompt_cache_retention: str | None
    functions: Iterable[Mapping[str, Any]] | None
    function_call: str | Mapping[str, Any] | None
    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, object] | None
    extra_body: Mapping[str, object] | None
    timeout: float | TimeoutLike | None
    llmroute: RequestOptions | Mapping[str, Any] | None


class ChatCreateParams(ChatParams, total=False):
    """Chat Completions parameters (as in ``openai.chat.completions.create``) plus `llmroute`.

    Parameters not listed here go in ``extra_body`` and are passed through.
    """

    response_format: Mapping[str, Any] | None


class ChatParseParams(ChatParams, total=False):
    """The parameters of `parse` and `stream`: `response_format` may be a type (a pydantic
    model, a dataclass, a TypedDict...), whose strict JSON schema is sent."""

    response_format: Mapping[str, Any] | type[Any] | None


class EmbeddingsCreateParams(TypedDict, total=False):
    """Embeddings parameters (as in ``openai.embeddings.create``) plus `llmroute`."""

    model: Required[str]
    input: Required[str | list[str] | list[int] | list[list[int]]]
    encoding_format: Literal["float", "base64"] | None
    dimensions: int | None
    user: str | None
    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, object] | None
    extra_body: Mapping[str, object] | None
    timeout: float | TimeoutLike | None
    llmroute: RequestOptions | Mapping[str, Any] | None


class ClientOnlyParams(TypedDict, total=False):
    """The client-side keyword arguments `models.list()` and `models.retrieve()` take (and
    ignore: listing models makes no request), as the openai SDK's do."""

    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, object] | None
    extra_body: Mapping[str, object] | None
    timeout: float | TimeoutLike | None


@runtime_checkable
class TimeoutLike(Protocol):
    """An ``httpx.Timeout`` or ``httpx2.Timeout`` (anything with a `read` timeout)."""

    @property
    def read(self) -> float | None: ...


def is_sentinel(value: object) -> bool:
    """Whether `value` is the openai SDK's ``NOT_GIVEN`` or ``omit`` ("not given"), told by
    its type's name and module, so openai need not be installed (or imported) to check."""
    kind = type(value)
    return kind.__name__ in _SENTINELS and kind.__module__.partition(".")[0] == "openai"


def given(value: object) -> bool:
    """Whether a keyword argument was given: not None and not an openai sentinel."""
    return value is not None and not is_sentinel(value)


def timeout_seconds(timeout: object) -> float | None:
    """The request deadline a `timeout=` argument asks for, in seconds (None: the route's).

    A number is the deadline. An ``httpx.Timeout``/``httpx2.Timeout`` gives its `read`
    part: what bounds the wait for the answer (llmroute's own connect timeouts are set
    per provider, and there is no write or pool phase to bound in process); a Timeout
    whose `read` is None sets no deadline, as it sets no read timeout in the SDK.
    """
    if not given(timeout):
        return None
    if isinstance(timeout, TimeoutLike) and not isinstance(timeout, int | float):
        timeout = timeout.read
        if timeout is None:
            return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise RequestError(
            f"timeout must be a positive number of seconds or an httpx Timeout, got {timeout!r}",
            param="timeout",
        )
    return float(timeout)


_SENTINELS = frozenset({"NotGiven", "Omit"})
#: The types of most values: never a sentinel, so the check skips their names.
_PLAIN = frozenset({str, int, float, bool, list, dict, tuple})
#: The client-side keyword arguments (`extra_body` is merged into the parameters).
_CLIENT = frozenset({"extra_body", "extra_headers", "extra_query", "timeout", "llmroute"})


class ClientParams:
    """What `split_client_params` takes out of the keyword arguments."""

    __slots__ = ("extra_headers", "extra_query", "options", "timeout")

    def __init__(self) -> None:
        self.extra_headers: Mapping[str, str] | None = None
        self.extra_query: Mapping[str, object] | None = None
        self.timeout: object = None
        self.options: object = None


def split_client_params(params: dict[str, Any]) -> tuple[dict[str, Any], ClientParams]:
    """Separate the API parameters from the client-side ones (``extra_*``, `timeout`, `llmroute`).

    ``None`` values and the openai SDK's ``NOT_GIVEN``/``omit`` sentinels mean
    "not given" and are dropped; ``extra_body`` is merged into the parameters.
    """
    client = ClientParams()
    api: dict[str, Any] = {}
    for name, value in params.items():
        kind = type(value)
        if kind not in _PLAIN and (value is None or is_sentinel(value)):
            continue
        if name not in _CLIENT:
            api[name] = value
        elif name == "extra_headers":
            client.extra_headers = value
        elif name == "extra_query":
            client.extra_query = value
        elif name == "timeout":
            client.timeout = value
        elif name == "llmroute":
            client.options = value
    body = params.get("extra_body")
    if body is not None and not is_sentinel(body):
        api.update(body)
    return api, client
