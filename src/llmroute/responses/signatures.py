"""Gemini's thought signatures through the Responses translation.

Gemini (2.5, 3) signs a function call with a ``thoughtSignature``, and Gemini 3 refuses a
tool loop whose calls come back without theirs. The chat translation keeps it on the tool
call as ``extra_content.google.thought_signature`` (`llmroute.providers.gemini`); a
Responses ``function_call`` item has no place for it, and clients rebuild those items from
their call id, name and arguments. So a signed call's output is preceded by a reasoning
item (the model's reasoning when it came just before, else one without a summary) whose
`encrypted_content` holds, among llmroute's translated thinking (`THINKING_PREFIX`), a
block ``{"type": "thought_signature", "call_id": ..., "signature": ...}``. Clients send
reasoning items back as they got them, and the stored conversation keeps them; `to_chat`
puts each signature back on the call of its `call_id`, where the Gemini adapter finds it.
A native target never sees it (`native_body` leaves llmroute's reasoning out), and
`without_signatures` takes it off the calls for every target that is not Gemini.
"""

from __future__ import annotations

from typing import Any

from .._request import AssistantMessage, ChatRequest, ToolCallParam
from ..providers._gemini_wire import signature_extra, thought_signature

__all__ = ["SIGNATURE_BLOCK", "signature_block", "signed_call", "split_thinking",
           "without_signatures"]  # fmt: skip

#: The type of the block that carries a call's thought signature.
SIGNATURE_BLOCK = "thought_signature"


def signature_block(call_id: str, extra: dict[str, Any]) -> dict[str, Any] | None:
    """The block for a chat tool call's thought signature (`extra`: the call's extra
    fields), or None when the call is not signed."""
    signature = thought_signature(extra)
    if signature is None:
        return None
    return {"type": SIGNATURE_BLOCK, "call_id": call_id, "signature": signature}


def split_thinking(blocks: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A translated reasoning item's blocks: the vendor's thinking blocks (Anthropic's,
    Bedrock's), and the thought signatures by call id. Raises `ValueError` for what is
    not a list of blocks."""
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise ValueError("not a list of blocks")
    thinking: list[dict[str, Any]] = []
    signatures: dict[str, str] = {}
    for block in blocks:
        if block.get("type") != SIGNATURE_BLOCK:
            thinking.append(block)
        elif isinstance(block.get("call_id"), str) and isinstance(block.get("signature"), str):
            signatures[block["call_id"]] = block["signature"]
        else:
            raise ValueError("a thought signature without its call_id or signature")
    return thinking, signatures


def signed_call(call: dict[str, Any], signature: str) -> dict[str, Any]:
    """A chat tool call (as `to_chat` writes it) with its thought signature."""
    return {**call, **signature_extra(signature)}


def _signed(call: ToolCallParam) -> bool:
    extra = call.__pydantic_extra__
    return extra is not None and "extra_content" in extra


def _unsigned(call: ToolCallParam) -> ToolCallParam:
    copy = call.model_copy()
    extra = dict(call.__pydantic_extra__ or {})
    del extra["extra_content"]
    object.__setattr__(copy, "__pydantic_extra__", extra)
    return copy


def without_signatures(chat: ChatRequest) -> ChatRequest:
    """`chat` (the chat translation of a Responses request) without the thought signatures
    `to_chat` put on its calls, for a target other than Gemini: the same request when it
    has none."""
    messages: list[Any] | None = None
    for index, message in enumerate(chat.messages):
        if not isinstance(message, AssistantMessage) or not message.tool_calls:
            continue
        calls = message.tool_calls
        if not any(_signed(call) for call in calls):
            continue
        if messages is None:
            messages = list(chat.messages)
        unsigned = [_unsigned(call) if _signed(call) else call for call in calls]
        messages[index] = message.model_copy(update={"tool_calls": unsigned})
    return chat if messages is None else chat.model_copy(update={"messages": messages})
