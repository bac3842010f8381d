"""The OpenAI Responses API, routed: its objects, its request, and the translations.

`types` models what the API returns (`Response` and the stream events; its output
items, content parts and usage are in `items`, re-exported); `request_model` validates
a request (`checks` holds the item checks) and `request` makes its native body or its
Chat Completions translation; `translate` turns a chat completion into a `Response`;
`events` turns chat chunks (or a native upstream's SSE lines, or a whole `Response`)
into stream events. Pure: nothing here does I/O.
"""

from . import types
from .events import ChunkEvents, response_events
from .native_events import NativeEventDecoder
from .request import BUILTIN_ITEM_TYPES, THINKING_PREFIX, native_body, thinking_content, to_chat
from .request_model import (
    ResponsesRequest,
    builtin_tools,
    validate_responses_request,
    with_history,
)
from .translate import completion_to_response, new_item_id
from .types import *  # noqa: F403 - the names of `types.__all__`, listed there once

__all__ = [
    "BUILTIN_ITEM_TYPES",
    "ChunkEvents",
    "NativeEventDecoder",
    "ResponsesRequest",
    "THINKING_PREFIX",
    "builtin_tools",
    "completion_to_response",
    "native_body",
    "new_item_id",
    "response_events",
    "thinking_content",
    "to_chat",
    "validate_responses_request",
    "with_history",
]
__all__ += types.__all__
