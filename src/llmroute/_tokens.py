"""Token estimates, for when a provider does not report usage (marked `estimated`)."""

from __future__ import annotations

from ._request import ChatRequest, Content

__all__ = ["content_text", "estimate_request_tokens", "estimate_text_tokens"]

# About four characters per token for English text with BPE tokenizers; the
# per-message overhead follows OpenAI's published counting recipe.
_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4


def estimate_text_tokens(text: str) -> int:
    """Roughly how many tokens `text` is."""
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def content_text(content: Content | None) -> str:
    """The text of a message's content, string or parts (non-text parts are skipped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # __dict__, not getattr: a pydantic model raises (expensively) for a field it lacks
    return "".join(part.__dict__.get("text") or "" for part in content)


def estimate_request_tokens(request: ChatRequest) -> int:
    """Roughly how many input tokens `request` is."""
    total = 3
    for message in request.messages:
        total += _PER_MESSAGE + estimate_text_tokens(content_text(message.content))
        calls = message.__dict__.get("tool_calls")
        if calls:
            for call in calls:
                total += estimate_text_tokens(call.function.name + call.function.arguments)
    if request.tools:
        for tool in request.tools:
            total += estimate_text_tokens(tool.model_dump_json(exclude_unset=True))
    return total
