"""A cache entry's bytes: a one-line header, then the response's own JSON.

The header is ASCII fields separated by spaces: the format version, the
operation (``chat`` or ``embeddings``), the original usage (input, output,
cache read, cache write, reasoning tokens; ``-`` when unknown) and cost in USD
(``-`` when unknown): what a hit reports as saved. Both streamed and
non-streamed answers are stored as the completion, so either kind of request
can be answered from either.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from .._types import ChatCompletion, CreateEmbeddingResponse, TokenUsage

__all__ = ["Entry", "decode_entry", "encode_entry"]

_VERSION = b"v1"


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded entry: the response and what it cost when it was first answered."""

    response: ChatCompletion | CreateEmbeddingResponse
    usage: TokenUsage | None
    cost_usd: float | None


def encode_entry(
    response: ChatCompletion | CreateEmbeddingResponse,
    usage: TokenUsage | None,
    cost_usd: float | None,
) -> bytes:
    """The bytes stored for `response`."""
    kind = "chat" if isinstance(response, ChatCompletion) else "embeddings"
    counts = "- - - - -"
    if usage is not None:
        counts = (
            f"{usage.input} {usage.output} {usage.cache_read} {usage.cache_write} {usage.reasoning}"
        )
    cost = "-" if cost_usd is None else repr(float(cost_usd))
    head = f"{kind} {counts} {cost}\n".encode()
    return _VERSION + b" " + head + response.__pydantic_serializer__.to_json(response)


def decode_entry(data: bytes, operation: str) -> Entry | None:
    """The entry in `data`; None when it is not a readable `operation` entry."""
    head, newline, body = data.partition(b"\n")
    fields = head.split(b" ")
    if not newline or len(fields) != 8 or fields[0] != _VERSION:
        return None
    if fields[1].decode() != operation:
        return None
    response: ChatCompletion | CreateEmbeddingResponse
    try:
        if operation == "chat":
            response = ChatCompletion.model_validate_json(body)
        else:
            response = CreateEmbeddingResponse.model_validate_json(body)
        usage = None
        if fields[2] != b"-":
            tokens, out, read, written, reasoning = (int(f) for f in fields[2:7])
            usage = TokenUsage(tokens, out, read, written, reasoning)
        cost = None if fields[7] == b"-" else float(fields[7])
    except (ValidationError, ValueError):
        return None
    return Entry(response, usage, cost)
