"""Chat stream chunks kept as the provider's OpenAI wire JSON, for relaying as bytes.

Fast path. The gateway answers a streamed chat completion in OpenAI's format; when
the provider speaks that format too, a plain text chunk (the bulk of any stream)
needs no typed `ChatCompletionChunk`: `wire_chunk` reads the few facts the stream
keeps (the first choice's text, whether it finished) from the parsed JSON, checks
that the chunk has exactly the shape the typed model would accept, and the
gateway forwards the provider's bytes. Anything else (a tool call, a usage
chunk, an error, a field of an unexpected type, a line break in the JSON) returns
None and takes the typed path, which validates it as before. With the stream read a
network batch at a time (`AsyncChatStream.wire_events`), a 20-chunk stream through the
gateway went from 2,555,185 to 2,065,876 instructions, 64.4k -> 39.0k per content
chunk (callgrind, ``count_gateway.py --kinds stream`` at ``--chunks`` 20 and 1). The
typed model's validation is 26.2k instructions a chunk, this schema's 18.9k, and
checking the parsed JSON in Python cost more than either (21k over ``from_json``'s 11.7k),
hence a schema. Oracle:
``tests/test_wire_chunks.py`` (hypothesis: the bytes, text, finishes and failures of
the typed path).
"""

from __future__ import annotations

from typing import Any

from pydantic_core import SchemaValidator, core_schema

from ._types import ChatCompletionChunk, provider_json

__all__ = ["WireChunk", "chunk_event", "wire_chunk"]

_chunk_json = ChatCompletionChunk.__pydantic_serializer__.to_json


class WireChunk:
    """A plain text chunk as the provider sent it: its JSON (`data`), and what the stream
    keeps of it (its first choice's `content`, whether that choice `finished`; its `id`,
    `created` and `model`, for the usage chunk llmroute adds after the last one)."""

    __slots__ = ("_parsed", "content", "data", "finished")

    def __init__(
        self, data: bytes, content: str | None, finished: bool, parsed: dict[str, Any]
    ) -> None:
        self.data = data
        self.content = content
        self.finished = finished
        self._parsed = parsed

    @property
    def id(self) -> str:
        return self._parsed["id"]  # type: ignore[no-any-return]

    @property
    def created(self) -> int:
        return self._parsed["created"]  # type: ignore[no-any-return]

    @property
    def model(self) -> str:
        return self._parsed["model"]  # type: ignore[no-any-return]


def _plain_chunk_schema() -> SchemaValidator:
    """A validator of plain text chunks, stricter than the typed model's: whatever it
    accepts, `ChatCompletionChunk` accepts as it is (no coercion, no field of another
    type), so forwarding the provider's JSON is what the typed path would forward."""
    text = core_schema.str_schema(strict=True)
    maybe_text = core_schema.typed_dict_field(core_schema.nullable_schema(text), required=False)
    number = core_schema.typed_dict_field(core_schema.int_schema(strict=True))
    delta = core_schema.typed_dict_schema(
        dict.fromkeys(("role", "content", "refusal"), maybe_text), extra_behavior="forbid"
    )
    choice = core_schema.typed_dict_schema(
        {
            "index": number,
            "delta": core_schema.typed_dict_field(delta),
            "finish_reason": maybe_text,
        },
        extra_behavior="allow",
    )
    kind = core_schema.literal_schema(["chat.completion.chunk"])
    chunk = core_schema.typed_dict_schema(
        {
            "id": core_schema.typed_dict_field(text),
            "object": core_schema.typed_dict_field(kind),
            "created": number,
            "model": core_schema.typed_dict_field(text),
            "choices": core_schema.typed_dict_field(core_schema.list_schema(choice, strict=True)),
            "system_fingerprint": maybe_text,
            "service_tier": maybe_text,
            # a usage chunk takes the typed path (its usage is read); null is no usage
            "usage": core_schema.typed_dict_field(core_schema.none_schema(), required=False),
        },
        extra_behavior="allow",
    )
    return SchemaValidator(chunk)


_validate_plain = _plain_chunk_schema().validate_json


def wire_chunk(data: bytes) -> WireChunk | None:
    """`data` (one ``data:`` payload of an OpenAI chat stream) as a `WireChunk`, when it
    is a plain text chunk the typed model accepts as it is; None for anything else."""
    if b"\n" in data or b"\r" in data:  # one byte each: cheap to look for
        return None
    try:
        parsed = _validate_plain(data)
    except ValueError:
        return None  # not a plain text chunk: the typed path reads (or reports) it
    choices = parsed["choices"]
    if not choices:
        return WireChunk(data, None, False, parsed)
    first = choices[0]
    return WireChunk(
        data, first["delta"].get("content"), first.get("finish_reason") is not None, parsed
    )


def chunk_event(chunk: ChatCompletionChunk | WireChunk) -> bytes:
    """The chunk's ``data:`` event: the provider's own JSON when it can be forwarded as
    it is, else the chunk serialised."""
    if type(chunk) is WireChunk:
        return b"data: " + chunk.data + b"\n\n"
    assert isinstance(chunk, ChatCompletionChunk)
    return b"data: " + (provider_json(chunk) or _chunk_json(chunk)) + b"\n\n"
