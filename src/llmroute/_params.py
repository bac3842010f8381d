"""The keyword arguments of `create()`, typed once for the async and the blocking client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, Required, TypedDict

from ._request import RequestOptions

__all__ = ["ChatCreateParams", "EmbeddingsCreateParams", "split_client_params"]


class ChatCreateParams(TypedDict, total=False):
    """Chat Completions parameters (as in ``openai.chat.completions.create``) plus `llmroute`.

    Parameters not listed here go in ``extra_body`` and are passed through.
    """

    model: Required[str]
    messages: Required[Iterable[Mapping[str, Any]]]
    stream_options: Mapping[str, Any] | None
    tools: Iterable[Mapping[str, Any]] | None
    tool_choice: str | Mapping[str, Any] | None
    parallel_tool_calls: bool | None
    response_format: Mapping[str, Any] | None
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
    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, object] | None
    extra_body: Mapping[str, object] | None
    timeout: float | None
    llmroute: RequestOptions | Mapping[str, Any] | None


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
    timeout: float | None
    llmroute: RequestOptions | Mapping[str, Any] | None


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
        if kind not in _PLAIN and (value is None or kind.__name__ in _SENTINELS):
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
    if body is not None and type(body).__name__ not in _SENTINELS:
        api.update(body)
    return api, client
