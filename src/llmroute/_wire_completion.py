"""Chat completions kept as the provider's OpenAI wire JSON, for relaying as bytes.

Fast path, the non-streamed twin of `_wire`'s chunks. The gateway answers a chat
completion in OpenAI's format; when the provider speaks that format too and the
answer is plain (no ``tool_calls``), it needs no typed `ChatCompletion`:
`wire_completion` checks that the body has exactly the shape the typed model accepts
as it is (strictly: no coercion, no field of another type), reads what the router
keeps of it (its usage and service tier), and the gateway forwards the provider's
bytes instead of the typed model serialised again. The typed model's validation and
serialisation are 5.4 µs for a one-choice answer, this schema's 2.4 µs (timeit,
2026-12); the gateway's own work per request 367.8k -> 335.5k instructions
(callgrind). Anything else (a tool call, a number as a string, an unknown
``object``, ``NaN``) returns None and takes the typed path, which validates (or
refuses) it as before. Taken only while the pipeline's stages are idle or only watch
the request (`Stage.watches`): a busy stage is handed the typed completion.

What the client receives is the provider's JSON, as a stream's chunks are: its
spacing and key order, a key it repeats (the router reads the last, as the typed path
does) and a number beyond a double's range (which the typed path would write as null)
reach the client as the provider wrote them. Otherwise it differs from the typed
path's output only in nulls: the typed model writes the optional fields the provider
left out as null (``"refusal": null``) and leaves out a null ``tool_calls`` or usage
details the provider sent. Oracle: ``tests/test_wire_completions.py`` (hypothesis:
against the typed model's acceptance, output, usage and tier).
"""

from __future__ import annotations

from typing import Any

from pydantic_core import SchemaValidator, core_schema

from ._route_info import RouteInfo, TokenUsage
from ._types import ChatCompletion, validator

__all__ = ["WireCompletion", "wire_completion"]

_NO_ROUTE = RouteInfo(request_id="")


class WireCompletion:
    """A plain chat completion as the provider sent it: its JSON (`data`), and what the
    router reads of it (`usage()`, `service_tier`); `llmroute` once the router attached
    its route info, as a `ChatCompletion`'s."""

    __slots__ = ("_parsed", "data", "llmroute")

    def __init__(self, data: bytes, parsed: dict[str, Any]) -> None:
        self.data = data
        self._parsed = parsed
        self.llmroute = _NO_ROUTE

    def attach_route_info(self, info: RouteInfo) -> None:
        """Attach llmroute's metadata (done by the router before the answer is returned)."""
        self.llmroute = info

    @property
    def service_tier(self) -> str | None:
        return self._parsed.get("service_tier")

    def usage(self) -> TokenUsage | None:
        """The usage the provider reported, normalised as `CompletionUsage.normalised`
        normalises it; None when it reported none."""
        usage = self._parsed.get("usage")
        if usage is None:
            return None
        prompt = usage.get("prompt_tokens_details")
        completion = usage.get("completion_tokens_details")
        written = prompt.get("cache_write_tokens") if prompt else None
        return TokenUsage(
            input=usage["prompt_tokens"],
            output=usage["completion_tokens"],
            cache_write=written if isinstance(written, int) else 0,
            cache_read=(prompt.get("cached_tokens") or 0) if prompt else 0,
            reasoning=(completion.get("reasoning_tokens") or 0) if completion else 0,
        )

    def facts(self) -> tuple[str, str, list[str]]:
        """Its model, id and choices' finish reasons (those set), as a `ChatCompletion`'s
        read (what the request log keeps of an answer)."""
        parsed = self._parsed
        reasons = [c["finish_reason"] for c in parsed["choices"] if c.get("finish_reason")]
        return parsed["model"], parsed["id"], reasons

    def typed(self) -> ChatCompletion:
        """This answer as the typed path reads it: validated from its JSON, with its route
        info."""
        completion: ChatCompletion = validator(ChatCompletion).validate_json(self.data)
        completion.attach_route_info(self.llmroute)
        return completion


def _plain_completion_schema() -> SchemaValidator:
    """A validator of plain chat completions, stricter than the typed model's: whatever it
    accepts, `ChatCompletion` accepts as it is, so forwarding the provider's JSON gives
    the client what the typed path would (but for nulls). Unknown keys are kept,
    as the typed models keep them (``extra="allow"`` at every level)."""
    text = core_schema.str_schema(strict=True)
    number = core_schema.int_schema(strict=True)

    def field(schema: core_schema.CoreSchema, required: bool = True) -> Any:
        return core_schema.typed_dict_field(schema, required=required)

    def optional(schema: core_schema.CoreSchema) -> Any:
        return field(core_schema.nullable_schema(schema), required=False)

    def obj(fields: dict[str, Any]) -> core_schema.CoreSchema:
        # unknown keys kept, as the typed models keep them
        return core_schema.typed_dict_schema(fields, extra_behavior="allow")

    def counts(*names: str) -> core_schema.CoreSchema:
        return obj({name: optional(number) for name in names})

    message = obj(
        {
            "role": field(core_schema.literal_schema(["assistant"])),
            "content": optional(text),
            "refusal": optional(text),
            # a tool call takes the typed path (a union of kinds): null is no call
            "tool_calls": field(core_schema.none_schema(), required=False),
        }
    )
    choice = obj(
        {
            "index": field(number),
            "message": field(message),
            "finish_reason": optional(text),
            "logprobs": field(core_schema.any_schema(), required=False),
        }
    )
    usage = obj(
        {
            "prompt_tokens": field(number),
            "completion_tokens": field(number),
            "total_tokens": field(number),
            "prompt_tokens_details": optional(counts("cached_tokens", "audio_tokens")),
            "completion_tokens_details": optional(
                counts(
                    "reasoning_tokens",
                    "audio_tokens",
                    "accepted_prediction_tokens",
                    "rejected_prediction_tokens",
                )
            ),
        }
    )
    completion = obj(
        {
            "id": field(text),
            "object": field(core_schema.literal_schema(["chat.completion"])),
            "created": field(number),
            "model": field(text),
            "choices": field(core_schema.list_schema(choice, strict=True)),
            "usage": optional(usage),
            "system_fingerprint": optional(text),
            "service_tier": optional(text),
        }
    )
    return SchemaValidator(completion)


_validate_plain = _plain_completion_schema().validate_json


def wire_completion(data: bytes) -> WireCompletion | None:
    """`data` (a chat completion's body in OpenAI's format) as a `WireCompletion`, when it
    is a plain completion the typed model accepts as it is; None for anything else (the
    typed path then reads it, or reports it malformed)."""
    if b"Infinity" in data or b"NaN" in data:
        # not JSON, though pydantic reads both (as floats, which the typed path writes as
        # null): a client must not get them (a text with either word takes the typed path)
        return None
    try:
        parsed = _validate_plain(data)
    except ValueError:
        return None  # not a plain completion: the typed path reads (or reports) it
    return WireCompletion(data, parsed)
