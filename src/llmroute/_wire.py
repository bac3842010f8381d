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

import re
from typing import Any

from pydantic_core import SchemaValidator, core_schema

from ._types import ChatCompletionChunk, provider_json

__all__ = ["WireChunk", "WireReader", "chunk_event", "wire_chunk"]

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


#: What a chunk's text may not hold raw in its JSON for the template to take it: the end of
#: the string, an escape, a control character (JSON allows none of them unescaped).
_UNSAFE = re.compile(rb'["\\\x00-\x1f]')
_CONTENT_KEY = b'"content":"'
_PROBE = "llmroute-probe"


def _raw_text(text: bytes) -> str | None:
    """`text` as a JSON string's content holds it, when it has nothing to unescape and is
    UTF-8; else None (the schema reads, or refuses, its chunk)."""
    if _UNSAFE.search(text) is not None:
        return None
    try:
        return text.decode()
    except UnicodeDecodeError:
        return None


class WireReader:
    """`wire_chunk` for one stream, with a template of its chunks.

    Fast path. A provider writes its text chunks alike but for the text: the same id,
    model and creation time, the same keys in the same order. After a chunk has passed
    the schema, the reader keeps the bytes before its text (``...{"content":"``) and
    after it (``","finish_reason":null}]}`` or so), once a probe (another text in their
    place, validated) has shown that what lies between them is the first choice's text
    and nothing else. A later chunk made of the same two and a text with nothing to
    unescape is then that chunk with another text: it is read without the schema. Any
    other chunk goes through `wire_chunk`, and teaches the reader its shape if it can.
    ~27.4k -> ~7.6k instructions per text chunk (`wire_chunk` against a template hit, callgrind,
    2026-12-03). Oracle:
    ``tests/test_wire_chunks.py`` (hypothesis: every chunk of many streams against
    `wire_chunk` and the typed model).
    """

    __slots__ = ("_finished", "_fixed", "_parsed", "_prefix", "_suffix")

    def __init__(self) -> None:
        self._prefix: bytes | None = None
        self._suffix = b""
        self._fixed = 0  # the template's own length: a chunk must be longer than both parts
        self._finished = False
        self._parsed: dict[str, Any] = {}

    def read(self, data: bytes) -> WireChunk | None:
        """`data` as `wire_chunk` reads it."""
        prefix = self._prefix
        if (
            prefix is not None
            and len(data) >= self._fixed
            and data.startswith(prefix)
            and data.endswith(self._suffix)
        ):
            text = data[len(prefix) : len(data) - len(self._suffix)]
            content = _raw_text(text)
            if content is not None:
                return WireChunk(data, content, self._finished, self._parsed)
        chunk = wire_chunk(data)
        if chunk is not None and chunk.content is not None:
            self._learn(chunk.data, chunk.content)
        return chunk

    def _learn(self, data: bytes, content: str) -> None:
        """Take `data`'s shape as the template, when its text is written raw, after the
        only ``"content":`` key of its kind, and a probe shows it is the first choice's."""
        text = content.encode()
        at = data.find(_CONTENT_KEY)
        if at <= 0 or data[at - 1] not in b"{," or data.count(b'"content":') != 1:
            return
        start = at + len(_CONTENT_KEY)
        end = start + len(text)
        if data[start:end] != text or data[end : end + 1] != b'"' or _UNSAFE.search(text):
            return
        prefix, suffix = data[:start], data[end:]
        probe = wire_chunk(prefix + _PROBE.encode() + suffix)
        if probe is None or probe.content != _PROBE:
            return
        self._prefix, self._suffix, self._fixed = prefix, suffix, len(prefix) + len(suffix)
        self._finished, self._parsed = probe.finished, probe._parsed


def chunk_event(chunk: ChatCompletionChunk | WireChunk) -> bytes:
    """The chunk's ``data:`` event: the provider's own JSON when it can be forwarded as
    it is, else the chunk serialised."""
    if type(chunk) is WireChunk:
        return b"data: " + chunk.data + b"\n\n"
    assert isinstance(chunk, ChatCompletionChunk)
    return b"data: " + (provider_json(chunk) or _chunk_json(chunk)) + b"\n\n"
