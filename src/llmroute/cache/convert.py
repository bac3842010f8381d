"""Conversions between a chat completion and the stream of chunks that delivers it.

A streamed answer is cached as the completion its chunks add up to, and a
cached completion is replayed to a streamed request as chunks: the same
content, refusal, tool calls, finish reasons, logprobs and usage, choice by
choice, and the fields beyond OpenAI's schema that messages and tool calls
carry (a vendor's reasoning: ``reasoning_content``, signed ``thinking_blocks``,
a Gemini call's ``extra_content.google.thought_signature``; ``annotations``...).
`chunks_to_completion` accumulates as the OpenAI SDK does (strings
concatenate; tool-call fragments join by their `index`; of the extra fields,
strings concatenate, lists extend, objects merge key by key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    ChoiceDelta,
    ChoiceDeltaFunction,
    ChoiceDeltaToolCall,
    ChunkChoice,
    FunctionCall,
)

__all__ = ["chunks_to_completion", "completion_to_chunks"]


def completion_to_chunks(completion: ChatCompletion) -> list[ChatCompletionChunk]:
    """The chunks a stream of `completion` would carry.

    Per choice: one chunk with the role, the whole content (and refusal and
    logprobs), one per tool call with its whole arguments, and one with the
    finish reason; then a usage chunk (``choices: []``) when the completion
    has usage.
    """
    common: dict[str, Any] = {
        "id": completion.id,
        "created": completion.created,
        "model": completion.model,
        "system_fingerprint": completion.system_fingerprint,
        "service_tier": completion.service_tier,
    }

    def chunk(choice: ChunkChoice) -> ChatCompletionChunk:
        return ChatCompletionChunk(choices=[choice], **common)

    chunks = []
    for choice in completion.choices:
        message = choice.message
        first = ChoiceDelta(
            role=message.role,
            content=message.content,
            refusal=message.refusal,
            **(message.__pydantic_extra__ or {}),
        )
        chunks.append(chunk(ChunkChoice(index=choice.index, delta=first, logprobs=choice.logprobs)))
        for position, call in enumerate(message.tool_calls or ()):
            fragment = ChoiceDeltaToolCall(
                index=position,
                id=call.id,
                type=call.type,
                function=ChoiceDeltaFunction(
                    name=call.function.name, arguments=call.function.arguments
                ),
                **(call.__pydantic_extra__ or {}),
            )
            delta = ChoiceDelta(tool_calls=[fragment])
            chunks.append(chunk(ChunkChoice(index=choice.index, delta=delta)))
        last = ChunkChoice(
            index=choice.index, delta=ChoiceDelta(), finish_reason=choice.finish_reason
        )
        chunks.append(chunk(last))
    if completion.usage is not None:
        chunks.append(ChatCompletionChunk(choices=[], usage=completion.usage, **common))
    return chunks


def _merge(extra: dict[str, Any], more: dict[str, Any]) -> None:
    """Add a fragment's extra fields to those gathered so far (`extra`, changed in place):
    strings concatenate, lists extend, objects merge key by key, anything else replaces."""
    for key, value in more.items():
        held: Any = extra.get(key)
        if type(held) in (str, list) and type(value) is type(held):
            extra[key] = held + value
        elif isinstance(held, dict) and isinstance(value, dict):
            merged = dict(held)
            _merge(merged, value)
            extra[key] = merged
        else:
            extra[key] = value


@dataclass(slots=True)
class _Call:
    id: str = ""
    type: str = "function"
    name: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Choice:
    role: str = "assistant"
    content: list[str] | None = None
    refusal: list[str] | None = None
    calls: dict[int, _Call] = field(default_factory=dict)
    finish_reason: str | None = None
    logprobs: dict[str, list[Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # reasoning, annotations...

    def add(self, choice: ChunkChoice) -> None:
        delta = choice.delta
        if delta.role:
            self.role = delta.role
        if delta.__pydantic_extra__:
            _merge(self.extra, delta.__pydantic_extra__)
        if delta.content is not None:
            self.content = (self.content or []) + [delta.content]
        if delta.refusal is not None:
            self.refusal = (self.refusal or []) + [delta.refusal]
        for fragment in delta.tool_calls or ():
            self._add_call(fragment)
        if choice.finish_reason is not None:
            self.finish_reason = choice.finish_reason
        self._add_logprobs(choice.logprobs)

    def _add_call(self, fragment: ChoiceDeltaToolCall) -> None:
        call = self.calls.setdefault(fragment.index, _Call())
        if fragment.id:
            call.id = fragment.id
        if fragment.type:
            call.type = fragment.type
        if fragment.__pydantic_extra__:
            _merge(call.extra, fragment.__pydantic_extra__)
        function = fragment.function
        if function is not None:
            if function.name:
                call.name.append(function.name)
            if function.arguments:
                call.arguments.append(function.arguments)

    def _add_logprobs(self, logprobs: Any) -> None:
        if not isinstance(logprobs, dict):
            return
        merged = self.logprobs if self.logprobs is not None else {}
        for key in ("content", "refusal"):
            items = logprobs.get(key)
            if isinstance(items, list):
                merged.setdefault(key, []).extend(items)
        self.logprobs = merged

    def build(self, index: int) -> Choice:
        calls = [
            ChatCompletionMessageToolCall(
                id=call.id,
                type="function",
                function=FunctionCall(name="".join(call.name), arguments="".join(call.arguments)),
                **call.extra,
            )
            for _, call in sorted(self.calls.items())
        ]
        content = "".join(self.content) if self.content is not None else None
        if calls and not content:
            content = None  # as a non-streamed tool-call answer has it
        message = ChatCompletionMessage(
            content=content,
            refusal="".join(self.refusal) if self.refusal is not None else None,
            tool_calls=calls or None,
            **self.extra,
        )
        logprobs = None
        if self.logprobs is not None:
            logprobs = {
                "content": self.logprobs.get("content"),
                "refusal": self.logprobs.get("refusal"),
            }
        return Choice(
            index=index, message=message, finish_reason=self.finish_reason, logprobs=logprobs
        )


def chunks_to_completion(chunks: Sequence[ChatCompletionChunk]) -> ChatCompletion:
    """The completion a stream's `chunks` add up to (`chunks` must not be empty)."""
    first = chunks[0]
    choices: dict[int, _Choice] = {}
    usage = None
    fingerprint, tier = first.system_fingerprint, first.service_tier
    for chunk in chunks:
        for choice in chunk.choices:
            state = choices.get(choice.index)
            if state is None:
                state = choices[choice.index] = _Choice()
            state.add(choice)
        if chunk.usage is not None:
            usage = chunk.usage
        fingerprint = fingerprint or chunk.system_fingerprint
        tier = tier or chunk.service_tier
    return ChatCompletion(
        id=first.id,
        created=first.created,
        model=first.model,
        choices=[state.build(index) for index, state in sorted(choices.items())],
        usage=usage,
        system_fingerprint=fingerprint,
        service_tier=tier,
    )
