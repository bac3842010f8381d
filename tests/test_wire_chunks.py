"""Oracle tests of the OpenAI wire fast path (`llmroute._wire`, `AsyncChatStream.wire_events`).

A plain text chunk read as a `WireChunk` must be what the typed path makes of it: the same
event bytes, text and finish; anything the fast path declines must take the typed path,
which accepts or rejects it as before. Whole streams are in ``test_wire_streams.py``.
"""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llmroute._types import ChatCompletionChunk, keep_provider_json, validator
from llmroute._wire import WireChunk, WireReader, chunk_event, wire_chunk

_typed = validator(ChatCompletionChunk)

# ---------------------------------------------------------------- one chunk

_text = st.one_of(st.none(), st.text(max_size=8))
_odd = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_maybe_odd = st.one_of(_text, _odd)


#: Fields the typed models declare that a chunk may leave out (each with a type of its own).
_DECLARED = ["service_tier", "system_fingerprint", "usage", "logprobs", "finish_reason", "index"]


@st.composite
def _chunks(draw: st.DrawFn) -> Any:
    """Chunk-like JSON values: mostly plain text chunks, with a field changed or added
    now and then (a wrong type, a tool call, usage, a missing field, an extra)."""
    delta: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["role", "content", "refusal"]), unique=True)):
        delta[name] = draw(_text if draw(st.integers(0, 9)) else _maybe_odd)
    if not draw(st.integers(0, 9)):
        delta[draw(st.sampled_from(["tool_calls", "function_call", "audio", "other"]))] = draw(
            st.one_of(_odd, st.just([{"index": 0, "function": {"arguments": "{}"}}]))
        )
    choice: dict[str, Any] = {"index": 0, "delta": delta}
    if draw(st.booleans()):
        choice["finish_reason"] = draw(st.sampled_from([None, "stop", "length"]))
    if draw(st.booleans()):
        choice["logprobs"] = draw(st.one_of(st.none(), _odd))
    chunk: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
        "choices": [choice] * draw(st.integers(0, 2)),
    }
    if draw(st.booleans()):
        chunk["system_fingerprint"] = draw(
            st.one_of(_text, _odd) if draw(st.integers(0, 4)) == 0 else _text
        )
    if draw(st.integers(0, 5)) == 0:
        chunk["usage"] = draw(
            st.one_of(
                st.none(),
                st.just({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
                _odd,
            )
        )
    for _ in range(draw(st.integers(0, 2))):  # a field of an odd type, missing, or extra
        target = draw(st.sampled_from([chunk, choice, delta]))
        key = draw(st.sampled_from([*sorted(target), *_DECLARED, "extra"]))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(_maybe_odd)
    return draw(st.one_of(st.just(chunk), st.just(chunk), st.just(chunk), _odd))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(_chunks(), st.booleans())
def test_a_wire_chunk_is_what_the_typed_path_makes_and_declines_the_rest(
    value: Any, spaced: bool
) -> None:
    data = json.dumps(value, separators=None if spaced else (",", ":")).encode()
    try:
        typed: ChatCompletionChunk | None = _typed.validate_json(data)
    except ValidationError:
        typed = None
    wire = wire_chunk(data)
    if wire is None:
        return  # the typed path reads it, exactly as without the fast path
    assert typed is not None, "the fast path accepted what the typed model rejects"
    keep_provider_json(typed, data)
    assert chunk_event(wire) == chunk_event(typed)
    assert (wire.id, wire.created, wire.model) == (typed.id, typed.created, typed.model)
    if typed.choices:
        first = typed.choices[0]
        assert wire.content == first.delta.content
        assert wire.finished == (first.finish_reason is not None)
    else:
        assert (wire.content, wire.finished) == (None, False)
    assert typed.usage is None and all(not c.delta.tool_calls for c in typed.choices)


def test_plain_text_chunks_take_the_fast_path_and_others_do_not() -> None:
    plain = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}  # fmt: skip
    assert isinstance(wire_chunk(json.dumps(plain).encode()), WireChunk)
    declined = [
        {**plain, "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
        {**plain, "created": "1"},  # the typed model takes it (lax), the fast path does not
        {**plain, "choices": [{"index": 0, "delta": {"tool_calls": []}}]},
        {"error": {"message": "overloaded"}},
    ]
    for value in declined:
        assert wire_chunk(json.dumps(value).encode()) is None
    # a usage object anywhere in the compact JSON sends the chunk to the typed path
    # without the schema's parse, even nested where the schema would take it
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    nested = json.dumps({**plain, "x": {"usage": usage}}, separators=(",", ":")).encode()
    assert wire_chunk(nested) is None
    assert isinstance(wire_chunk(nested.replace(b'"usage":{', b'"usage": {')), WireChunk)
    assert wire_chunk(b"[DONE]") is None
    assert wire_chunk(json.dumps(plain).encode().replace(b",", b",\r", 1)) is None


# ---------------------------------------------------------------- a stream's template


def _same_reading(got: WireChunk | None, expected: WireChunk | None) -> None:
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert (got.data, got.content, got.finished) == (expected.data, expected.content,
                                                     expected.finished)  # fmt: skip
    assert (got.id, got.created, got.model) == (expected.id, expected.created, expected.model)


def _with_text(shape: Any, text: str) -> Any:
    """`shape` with its first choice's text replaced, where it has one."""
    value = json.loads(json.dumps(shape))
    choices = value.get("choices") if isinstance(value, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    if isinstance(first, dict) and isinstance(first.get("delta"), dict):
        first["delta"]["content"] = text
    return value


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_chunks(), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 2), st.text(max_size=6)), max_size=12),
    st.booleans(),
    st.booleans(),
)
def test_a_readers_template_reads_every_chunk_as_wire_chunk_does(
    shapes: list[Any], texts: list[tuple[int, str]], spaced: bool, ascii_only: bool
) -> None:
    """`WireReader` (`_wire.py`) reads each chunk of a stream as `wire_chunk` does (which
    the test above holds to the typed model), whatever the texts hold (quotes, escapes,
    control characters, any script) and however the chunks' shapes alternate."""
    reader = WireReader()
    separators = None if spaced else (",", ":")
    for index, text in texts or [(0, "")]:
        value = _with_text(shapes[index % len(shapes)], text)
        data = json.dumps(value, separators=separators, ensure_ascii=ascii_only).encode()
        _same_reading(reader.read(data), wire_chunk(data))


_PROBE_TEXTS = st.sampled_from(["llmroute-probe-1", "llmroute-probe-2", "p1", ""])
_SAFE_TEXT = st.text(st.characters(exclude_characters='"\\', min_codepoint=32), max_size=6)


@st.composite
def _real_streams(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    """A stream's text chunks as providers write them: one compact shape (OpenAI's padding
    or not, usage null or not, a lookalike of the text's place or a duplicate key now and
    then) and many texts, the probes' among them; and whether the shape is one a template
    must read (no lookalike, no duplicate)."""
    padded, lookalike, duplicate = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    usage = draw(st.booleans())
    lookalike, duplicate = lookalike and draw(st.booleans()), duplicate and draw(st.booleans())
    texts = draw(st.lists(st.one_of(_SAFE_TEXT, _PROBE_TEXTS, st.text(max_size=4)),
                          min_size=3, max_size=10))  # fmt: skip
    chunks = []
    for text in texts:
        value: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                 "created": 1, "model": "m", "system_fingerprint": "fp"}  # fmt: skip
        if lookalike:
            value["x"] = {"content": draw(st.one_of(_PROBE_TEXTS, st.just(text)))}
        finish = draw(st.sampled_from([None] * 5 + ["stop"]))  # a last text, now and then
        value["choices"] = [{"index": 0, "delta": {"content": text}, "logprobs": None,
                             "finish_reason": finish}]  # fmt: skip
        if usage:
            value["usage"] = None
        if padded:
            value["obfuscation"] = draw(
                st.one_of(st.text(max_size=5), _PROBE_TEXTS, st.just("RAW"))
            )
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
            errors="surrogatepass"  # a lone surrogate: bytes no UTF-8 decoder takes
        )
        data = data.replace(b'"obfuscation":"RAW"', b'"obfuscation":"a\x01"')  # not JSON
        if duplicate:  # a second text after the first: JSON's last one counts
            data = data.replace(b'"delta":{', b'"delta":{"content" : "dup",', 1)
        chunks.append(data)
    return chunks, not (lookalike or duplicate)


def _is_utf8(data: bytes) -> bool:
    """Whether `data` decodes as UTF-8 (a drawn lone surrogate is written as bytes that do
    not: the template leaves such a chunk to the schema, which declines it)."""
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_real_streams())
def test_a_readers_template_reads_real_shaped_streams_as_wire_chunk_does(
    stream: tuple[list[bytes], bool],
) -> None:
    """Streams of one shape and many texts (the probes' texts too; OpenAI's padding; a
    lookalike of the text's place; a duplicate key): each chunk read as `wire_chunk`
    reads it; and a plain shape's safe texts are read by the template."""
    import llmroute._wire as wire

    chunks, plain = stream
    reader = WireReader()
    schema = 0
    real = wire.wire_chunk

    def counting(data: bytes) -> WireChunk | None:
        nonlocal schema
        schema += 1
        return real(data)

    with patch.object(wire, "wire_chunk", counting):
        for data in chunks:
            _same_reading(reader.read(data), real(data))
    odd = [data for data in chunks if b"\\" in data or b"\x01" in data or b'"stop"' in data
           or not _is_utf8(data)]  # fmt: skip
    if plain and not odd:  # the first learns (with two probes); the rest hit
        assert schema == 3


def test_a_streams_text_chunks_are_read_by_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    """After two chunks (the role's, the first text's), a provider's text chunks match the
    template; one with an escape in its text, or another shape, does not (and is read by
    the schema, as every chunk before the template)."""
    calls = 0
    reader = WireReader()

    def counting(data: bytes) -> WireChunk | None:
        nonlocal calls
        calls += 1
        return wire_chunk(data)

    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                         "logprobs": None, "finish_reason": None}]}  # fmt: skip
    first = json.dumps(base, separators=(",", ":")).encode()
    assert reader.read(first) is not None
    del base["choices"][0]["delta"]["role"]
    texts = [" Hello", " wörld", " 日本", "", " a\\b", ' "q"', "\t"]
    for text in texts:
        data = json.dumps(_with_text(base, text), separators=(",", ":")).encode()
        read = reader.read(data)
        assert (
            read is not None and read.content == json.loads(data)["choices"][0]["delta"]["content"]
        )
    # bytes JSON does not allow raw in a string, where the text is: declined, as the
    # schema declines them
    template = json.dumps(_with_text(base, "XY"), separators=(",", ":")).encode()
    for raw in [b"a\tb", b"a\x01", b"\xff\xfe", b"\xed\xa0\x80"]:
        odd = template.replace(b"XY", raw)
        assert wire_chunk(odd) is None
        assert reader.read(odd) is None
    # what went through the schema: learning twice (a chunk and its probe each time),
    # then only the texts the template cannot take raw (a backslash, a quote, a tab)
    import llmroute._wire as wire

    monkeypatch.setattr(wire, "wire_chunk", counting)
    for text in [" again", " more"]:
        reader.read(json.dumps(_with_text(base, text), separators=(",", ":")).encode())
    assert calls == 0
    reader.read(json.dumps(_with_text(base, "a\\b"), separators=(",", ":")).encode())
    assert calls == 1


@pytest.mark.parametrize(
    "data",
    [
        # a key named x"content, ahead of the text written with spaces
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"x\\"content":"hi","choices":[{"index":0,"delta":{"content" : "hi"}}]}',
        # another object's "content" key, the first choice's written with spaces
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
        b'[{"index":0,"delta":{"content" : "hi"},"logprobs":{"content":"hi"}}]}',
    ],
)
def test_a_template_is_learnt_only_where_the_first_choices_text_is(data: bytes) -> None:
    """A lookalike of the text's place (the same key and value elsewhere) teaches the
    reader nothing: the next chunk, changed there, is read by the schema, correctly."""
    reader = WireReader()
    assert json.loads(data)  # valid JSON
    _same_reading(reader.read(data), wire_chunk(data))
    changed = data.replace(b':"hi"', b':"yo"', 1)
    _same_reading(reader.read(changed), wire_chunk(changed))
    assert wire_chunk(changed) is not None and reader.read(changed).content == "hi"  # type: ignore[union-attr]
