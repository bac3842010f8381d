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

from ._types import ChatCompletionChunk, keep_provider_json, provider_json, validator

__all__ = ["WireChunk", "WireReader", "chunk_event", "typed_chunk", "wire_chunk"]

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

    def has_content(self) -> bool:
        """Whether any choice carries text, a refusal or a finish, as `_any_content` asks of
        a typed chunk (a plain chunk's delta holds no tool call). Read from the chunk's own
        parse: ask it of chunks `wire_chunk` made, not of a template's."""
        for choice in self._parsed["choices"]:
            delta = choice["delta"]
            if delta.get("content") or delta.get("refusal") or choice.get("finish_reason"):
                return True
        return False


def typed_chunk(chunk: WireChunk) -> ChatCompletionChunk:
    """`chunk` as the typed path reads it: validated from its JSON, which it keeps to
    forward (the decoder's `feed` makes the same; a plain chunk has no usage)."""
    typed: ChatCompletionChunk = validator(ChatCompletionChunk).validate_json(chunk.data)
    keep_provider_json(typed, chunk.data)
    return typed


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
#: A usage object, in the compact JSON providers write: every stream that reports its
#: usage ends with such a chunk (llmroute asks for one), which the schema would parse
#: whole to refuse: the gateway's own work per 1-chunk stream 806.2k -> 791.0k
#: instructions (callgrind, ``count_gateway.py --kinds own-stream``, 2026-12-03). Found anywhere
#: (a lookalike nested in another object too), the chunk takes the typed path, which reads
#: every chunk right: declining one more costs only time (a stream whose chunks all nest
#: one counts them as the decoder's misses, and after three reads the rest typed).
_USAGE = b'"usage":{'


def wire_chunk(data: bytes) -> WireChunk | None:
    """`data` (one ``data:`` payload of an OpenAI chat stream) as a `WireChunk`, when it
    is a plain text chunk the typed model accepts as it is; None for anything else."""
    if b"\n" in data or b"\r" in data:  # one byte each: cheap to look for
        return None
    if _USAGE in data:  # a usage chunk, which the schema refuses: not worth parsing
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
#: OpenAI's per-chunk padding (``stream_options.include_obfuscation``, on unless turned
#: off): a random string, different in every chunk, after the choices.
_OBFUSCATION_KEY = b',"obfuscation":"'
#: Two texts (and paddings) put in a candidate template's places: each must come back as
#: the first choice's text, so the places are the text's whatever the chunk's own text was.
_PROBES = (("llmroute-probe-1", "p1"), ("llmroute-probe-2", "p2"))
#: Templates learnt and replaced without reading a chunk, after which a stream stops
#: learning (its chunks differ by more than their text: each would cost three validations).
_MAX_WASTED = 2


def _raw_text(text: bytes) -> str | None:
    """`text` as a JSON string's content holds it, when it has nothing to unescape and is
    UTF-8; else None. None is an answer, not a lost error: the reader then hands the
    chunk to `wire_chunk`, which declines bytes that are not UTF-8 too, and the typed
    path reports them (`MalformedResponse`)."""
    if _UNSAFE.search(text) is not None:
        return None
    if text.isascii():  # most text: nothing that can fail to decode
        return text.decode("ascii")
    try:
        return text.decode()
    except UnicodeDecodeError:
        return None  # see above: the typed path reports the chunk


class WireReader:
    """`wire_chunk` for one stream, with a template of its chunks.

    Fast path. A provider writes its text chunks alike but for the text (and OpenAI's
    padding, ``"obfuscation"``): the same id, model and creation time, the same keys in
    the same order. After a chunk has passed the schema, the reader keeps the bytes
    before its text (``...{"content":"``), between its text and its padding if it has
    one, and after, once two probes (other texts and paddings in their places,
    validated) have shown that the first place holds the first choice's text and
    nothing else. A later chunk made of the same parts, with a text and a padding that
    have nothing to unescape, is then that chunk with another text: it is read without
    the schema. Any other chunk goes through `wire_chunk`, and teaches the reader its
    shape if it can (not a role's chunk, which comes once; and a stream whose chunks
    differ by more stops learning after `_MAX_WASTED` unused templates).
    ~27.4k -> ~9.0k instructions per text chunk (`wire_chunk` against a template hit,
    callgrind, 2026-12-03); a 20-chunk stream through the gateway 1,953,832 -> 1,698,654.
    Oracle: ``tests/test_wire_chunks.py`` (hypothesis: every chunk of many streams against
    `wire_chunk`, which is held to the typed model).
    """

    __slots__ = (
        "_end", "_finished", "_fixed", "_hits", "_middle", "_parsed", "_prefix", "_start", "_tail",
        "_wasted",
    )  # fmt: skip

    def __init__(self) -> None:
        self._prefix: bytes | None = None
        self._middle = b""  # from the text's end to the padding's start; empty: no padding
        self._tail = b""
        self._fixed = 0  # the template's own length: a chunk is at least as long
        self._start = self._end = 0  # where a chunk's text (and padding) lies between them
        self._finished = False
        self._parsed: dict[str, Any] = {}
        self._hits = 0  # chunks the current template read
        self._wasted = 0  # templates replaced before they read any

    def read(self, data: bytes) -> WireChunk | None:
        """`data` as `wire_chunk` reads it."""
        prefix = self._prefix
        if (
            prefix is not None
            and len(data) >= self._fixed
            and data.startswith(prefix)
            and data.endswith(self._tail)
        ):
            rest = data[self._start : self._end]
            text = self._unpadded(rest) if self._middle else rest
            content = _raw_text(text) if text is not None else None
            if content is not None:
                self._hits += 1
                return WireChunk(data, content, self._finished, self._parsed)
        chunk = wire_chunk(data)
        if chunk is not None and chunk.content is not None and self._wasted < _MAX_WASTED:
            self._learn(chunk)
        return chunk

    def _unpadded(self, rest: bytes) -> bytes | None:
        """The text of a chunk cut at its template's prefix and tail (`rest`: its text, the
        template's middle, its padding), when the padding has nothing to unescape."""
        end = rest.find(b'"')  # the text's end: a raw text holds no quote
        middle = self._middle
        if end < 0 or not rest.startswith(middle, end):
            return None
        if _raw_text(rest[end + len(middle) :]) is None:  # the padding
            return None
        return rest[:end]

    def _learn(self, chunk: WireChunk) -> None:
        """Take `chunk`'s shape as the template, when its text is written raw after the only
        ``"content":`` key of its kind, and the probes show it is the first choice's."""
        data = chunk.data
        if b'"role":' in data:  # a stream's first chunk: its shape does not come again
            return
        assert chunk.content is not None  # `read` teaches text chunks only
        text = chunk.content.encode()
        at = data.find(_CONTENT_KEY)
        if at <= 0 or data[at - 1] not in b"{," or data.count(b'"content":') != 1:
            return
        start = at + len(_CONTENT_KEY)
        end = start + len(text)
        if data[start:end] != text or data[end : end + 1] != b'"' or _UNSAFE.search(text):
            return
        prefix, middle, tail = data[:start], b"", data[end:]
        padding = tail.find(_OBFUSCATION_KEY)
        if padding >= 0 and data.count(b'"obfuscation":') == 1:
            first = padding + len(_OBFUSCATION_KEY)
            last = tail.find(b'"', first)
            if last > 0 and _raw_text(tail[first:last]) is not None:
                middle, tail = tail[:first], tail[last:]
        for probe_text, probe_padding in _PROBES:
            filled = prefix + probe_text.encode() + middle
            if middle:
                filled += probe_padding.encode()
            probe = wire_chunk(filled + tail)
            if probe is None or probe.content != probe_text:
                return
        if self._prefix is not None and not self._hits:
            self._wasted += 1
        self._prefix, self._middle, self._tail = prefix, middle, tail
        self._fixed = len(prefix) + len(middle) + len(tail)
        self._start, self._end = len(prefix), -len(tail)  # a tail is never empty: '"...'
        self._finished, self._parsed, self._hits = chunk.finished, chunk._parsed, 0


def chunk_event(chunk: ChatCompletionChunk | WireChunk) -> bytes:
    """The chunk's ``data:`` event: the provider's own JSON when it can be forwarded as
    it is, else the chunk serialised."""
    if type(chunk) is WireChunk:
        return b"data: " + chunk.data + b"\n\n"
    assert isinstance(chunk, ChatCompletionChunk)
    return b"data: " + (provider_json(chunk) or _chunk_json(chunk)) + b"\n\n"
