"""A cached answer, and its bytes in a shared backend.

`StoredAnswer` is what the cache keeps: the response's JSON (parsed again
for every hit, so no caller can change the answer another receives), and
what a hit reports as saved: the original usage and cost. Both streamed and
non-streamed answers are stored as the completion, so either kind of request
can be answered from either.

In Redis the answer is a one-line header, then the response's JSON. The
header is ASCII fields separated by spaces: the format version, the
operation (``chat`` or ``embeddings``), the usage (input, output, cache read,
cache write, reasoning tokens; ``-`` when unknown) and the cost in USD (``-``
when unknown).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from .._types import ChatCompletion, CreateEmbeddingResponse, TokenUsage, validator

__all__ = ["StoredAnswer", "decode_answer", "encode_answer"]

_log = logging.getLogger("llmroute.cache")

_VERSION = b"v1"


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """A cached response (its JSON) and what it used and cost when it was first answered."""

    operation: str  # "chat" or "embeddings"
    body: bytes
    usage: TokenUsage | None
    cost_usd: float | None

    @classmethod
    def of(
        cls,
        response: ChatCompletion | CreateEmbeddingResponse,
        usage: TokenUsage | None,
        cost_usd: float | None,
    ) -> StoredAnswer:
        """The answer to store for `response`."""
        operation = "chat" if isinstance(response, ChatCompletion) else "embeddings"
        return cls(operation, response.__pydantic_serializer__.to_json(response), usage, cost_usd)

    def response(self) -> ChatCompletion | CreateEmbeddingResponse | None:
        """A fresh copy of the response; None when the body cannot be read."""
        try:
            if self.operation == "chat":
                chat: ChatCompletion = validator(ChatCompletion).validate_json(self.body)
                return chat
            embeddings: CreateEmbeddingResponse = validator(CreateEmbeddingResponse).validate_json(
                self.body
            )
            return embeddings
        except ValidationError as exc:
            _log.warning(
                "llmroute cache: an entry that no longer parses, treated as a miss: %s", exc
            )
            return None


def encode_answer(answer: StoredAnswer) -> bytes:
    """The bytes stored in a shared backend for `answer`."""
    usage = answer.usage
    counts = "- - - - -"
    if usage is not None:
        counts = (
            f"{usage.input} {usage.output} {usage.cache_read} {usage.cache_write} {usage.reasoning}"
        )
    cost = "-" if answer.cost_usd is None else repr(float(answer.cost_usd))
    head = f"{answer.operation} {counts} {cost}\n".encode()
    return _VERSION + b" " + head + answer.body


def decode_answer(data: bytes) -> StoredAnswer | None:
    """The answer in `data`; None when this version cannot read it."""
    head, newline, body = data.partition(b"\n")
    fields = head.split(b" ")
    if not newline or len(fields) != 8 or fields[0] != _VERSION:
        return None
    operation = fields[1].decode()
    if operation not in ("chat", "embeddings"):
        return None
    try:
        usage = None
        if fields[2] != b"-":
            tokens, out, read, written, reasoning = (int(f) for f in fields[2:7])
            usage = TokenUsage(tokens, out, read, written, reasoning)
        cost = None if fields[7] == b"-" else float(fields[7])
    except ValueError as exc:
        _log.warning("llmroute cache: an entry with unreadable counts, treated as a miss: %s", exc)
        return None
    return StoredAnswer(operation, body, usage, cost)
