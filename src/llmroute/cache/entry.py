"""A cached answer, and its bytes in a shared backend.

`StoredAnswer` is what the cache keeps: the response's JSON (parsed again
for every hit, so no caller can change the answer another receives), and
what a hit reports as saved: the original usage and cost. Both streamed and
non-streamed chat answers are stored as the completion, so either kind of
request can be answered from either. A Responses answer is stored as the
`Response` (non-streamed) or as its stream's events (streamed), so a
streamed request is replayed the same events; each kind of request can be
answered from the other.

In Redis the answer is a one-line header, then the response's JSON. The
header is ASCII fields separated by spaces: the format version, the
operation (``chat``, ``embeddings`` or ``responses``), the usage (input, output, cache read,
cache write, reasoning tokens; ``-`` when unknown) and the cost in USD (``-``
when unknown).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic_core import from_json

from .._types import ChatCompletion, CreateEmbeddingResponse, TokenUsage, validator
from ..responses.types import Response, ResponseStreamEvent, parse_event

__all__ = ["StoredAnswer", "decode_answer", "encode_answer"]

_log = logging.getLogger("llmroute.cache")

_VERSION = b"v1"


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """A cached response (its JSON) and what it used and cost when it was first answered."""

    operation: str  # "chat", "embeddings" or "responses"
    body: bytes
    usage: TokenUsage | None
    cost_usd: float | None

    @classmethod
    def of(
        cls,
        response: ChatCompletion | CreateEmbeddingResponse | Response | list[ResponseStreamEvent],
        usage: TokenUsage | None,
        cost_usd: float | None,
    ) -> StoredAnswer:
        """The answer to store for `response` (a Responses stream: its events)."""
        if isinstance(response, list):
            body = b"[" + b",".join(e.__pydantic_serializer__.to_json(e) for e in response) + b"]"
            return cls("responses", body, usage, cost_usd)
        if isinstance(response, ChatCompletion):
            operation = "chat"
        elif isinstance(response, Response):
            operation = "responses"
        else:
            operation = "embeddings"
        return cls(operation, response.__pydantic_serializer__.to_json(response), usage, cost_usd)

    def response(
        self,
    ) -> ChatCompletion | CreateEmbeddingResponse | Response | list[ResponseStreamEvent] | None:
        """A fresh copy of the response (a Responses stream's events, when that is what was
        stored); None when the body cannot be read."""
        try:
            if self.operation == "responses":
                if self.body.startswith(b"["):
                    return [parse_event(data) for data in from_json(self.body)]
                return Response.model_validate_json(self.body)
            if self.operation == "chat":
                chat: ChatCompletion = validator(ChatCompletion).validate_json(self.body)
                return chat
            embeddings: CreateEmbeddingResponse = validator(CreateEmbeddingResponse).validate_json(
                self.body
            )
            return embeddings
        except ValueError as exc:  # a ValidationError, or JSON that no longer reads
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
    if operation not in ("chat", "embeddings", "responses"):
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
