"""The Responses API's output items, their content parts and usage (and `construct`, from
`llmroute._construct`).

`llmroute.responses.types` re-exports every name here (the `Response` that holds them
and the stream events are there).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Tag

from .._construct import construct
from .._route_info import TokenUsage
from .._types import OpenAIObject

__all__ = [
    "ContentPart",
    "InputTokensDetails",
    "ItemStatus",
    "OutputItem",
    "OutputTokensDetails",
    "ResponseContentPart",
    "ResponseFunctionToolCall",
    "ResponseOutputItem",
    "ResponseOutputMessage",
    "ResponseOutputRefusal",
    "ResponseOutputText",
    "ResponseReasoningItem",
    "ResponseReasoningText",
    "ResponseStatus",
    "ResponseSummaryText",
    "ResponseUsage",
    "construct",
    "response_usage",
    "usage_from_tokens",
]

_OPEN = ConfigDict(extra="allow", defer_build=True)

ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


def _kind(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


# ---------------------------------------------------------------- content parts


class ResponseOutputText(OpenAIObject):
    """Text the model wrote, with its annotations (citations) and, if asked, logprobs."""

    model_config = _OPEN
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]]
    logprobs: list[dict[str, Any]] | None = None


class ResponseOutputRefusal(OpenAIObject):
    """The model's refusal to answer."""

    model_config = _OPEN
    type: Literal["refusal"] = "refusal"
    refusal: str


class ResponseContentPart(OpenAIObject):
    """A content part of any other type (``reasoning_text`` in a content-part event, or
    whatever a native upstream sends), kept whole."""

    model_config = _OPEN
    type: str


def _part_kind(value: Any) -> str:
    kind = _kind(value)
    return kind if kind in ("output_text", "refusal") else "other"


#: A content part of an output message (or of a content-part event).
ContentPart = Annotated[
    Annotated[ResponseOutputText, Tag("output_text")]
    | Annotated[ResponseOutputRefusal, Tag("refusal")]
    | Annotated[ResponseContentPart, Tag("other")],
    Discriminator(_part_kind),
]


class ResponseSummaryText(OpenAIObject):
    """One part of a reasoning item's summary."""

    model_config = _OPEN
    type: Literal["summary_text"] = "summary_text"
    text: str


class ResponseReasoningText(OpenAIObject):
    """Reasoning text (a reasoning item's `content`)."""

    model_config = _OPEN
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


# ---------------------------------------------------------------- output items


class ResponseOutputMessage(OpenAIObject):
    """An assistant message: text and refusal parts."""

    model_config = _OPEN
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    content: list[ContentPart]


class ResponseFunctionToolCall(OpenAIObject):
    """A call of a function tool; `call_id` is what its `function_call_output` answers."""

    model_config = _OPEN
    id: str | None = None
    type: Literal["function_call"] = "function_call"
    call_id: str
    name: str
    arguments: str
    status: ItemStatus | None = None


class ResponseReasoningItem(OpenAIObject):
    """The model's reasoning: a summary, and (to send back statelessly) its encrypted
    content."""

    model_config = _OPEN
    id: str
    type: Literal["reasoning"] = "reasoning"
    summary: list[ResponseSummaryText]
    content: list[ResponseReasoningText] | None = None
    encrypted_content: str | None = None
    status: ItemStatus | None = None


class ResponseOutputItem(OpenAIObject):
    """An output item of any other type (``web_search_call``, ``file_search_call``,
    ``custom_tool_call``, ...), kept whole."""

    model_config = _OPEN
    type: str


_ITEM_TAGS = frozenset({"message", "function_call", "reasoning"})


def _item_kind(value: Any) -> str:
    kind = _kind(value)
    return kind if kind in _ITEM_TAGS else "other"


#: An item of a response's `output`.
OutputItem = Annotated[
    Annotated[ResponseOutputMessage, Tag("message")]
    | Annotated[ResponseFunctionToolCall, Tag("function_call")]
    | Annotated[ResponseReasoningItem, Tag("reasoning")]
    | Annotated[ResponseOutputItem, Tag("other")],
    Discriminator(_item_kind),
]


# ---------------------------------------------------------------- usage


#: Usage details are values, never changed once made (``frozen``): a response whose
#: details are all zero shares one instance of each (`response_usage`).
_DETAILS = ConfigDict(extra="allow", defer_build=True, frozen=True)


class InputTokensDetails(OpenAIObject):
    """A breakdown of the input tokens (immutable)."""

    model_config = _DETAILS
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(OpenAIObject):
    """A breakdown of the output tokens (immutable)."""

    model_config = _DETAILS
    reasoning_tokens: int = 0


class ResponseUsage(OpenAIObject):
    """Token usage as the Responses API reports it (input includes cached tokens, output
    includes reasoning tokens)."""

    model_config = _OPEN
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int

    def normalised(self, *, estimated: bool = False) -> TokenUsage:
        """This usage as a `TokenUsage`."""
        given = self.input_tokens_details
        return TokenUsage(
            input=self.input_tokens,
            output=self.output_tokens,
            cache_read=given.cached_tokens,
            cache_write=given.cache_write_tokens,
            reasoning=self.output_tokens_details.reasoning_tokens,
            estimated=estimated,
        )


_NO_INPUT_DETAILS = construct(InputTokensDetails, {"cached_tokens": 0, "cache_write_tokens": 0})
_NO_OUTPUT_DETAILS = construct(OutputTokensDetails, {"reasoning_tokens": 0})


def response_usage(
    input_tokens: int, output_tokens: int, cached: int, written: int, reasoning: int
) -> ResponseUsage:
    """A `ResponseUsage` with every field set (as the SDK requires), built trusted: the
    counts must be ints. Details that are all zero are shared constants (frozen).

    Fast path: a chat completion's usage read in ~29,200 instructions (one validation of
    the three models) -> ~12,800 with zero details (callgrind, `usage_of`). Oracle:
    tests/test_responses_fast_paths.py (what one validation builds).
    """
    given = (
        _NO_INPUT_DETAILS
        if not (cached or written)
        else construct(InputTokensDetails, {"cached_tokens": cached, "cache_write_tokens": written})
    )
    made = (
        _NO_OUTPUT_DETAILS
        if not reasoning
        else construct(OutputTokensDetails, {"reasoning_tokens": reasoning})
    )
    return construct(ResponseUsage, {
        "input_tokens": input_tokens, "input_tokens_details": given,
        "output_tokens": output_tokens, "output_tokens_details": made,
        "total_tokens": input_tokens + output_tokens,
    })  # fmt: skip


def usage_from_tokens(usage: TokenUsage) -> ResponseUsage:
    """`usage` as the Responses API reports it (every field set, as the SDK requires)."""
    return response_usage(
        usage.input, usage.output, usage.cache_read, usage.cache_write, usage.reasoning
    )
