"""The Bedrock adapter: Chat Completions over the Converse API, embeddings over InvokeModel.

What the translation does:

- system and developer messages become ``system``; tool calls and results become
  ``toolUse`` and ``toolResult`` blocks; consecutive turns of one role merge; a
  ``cache_control`` on a content part becomes a ``cachePoint`` after it.
- ``response_format`` JSON becomes a forced tool whose input is the answer (or
  ``outputConfig.textFormat`` with ``structured_output: native``).
- Streams (ConverseStream) are binary event streams, decoded with botocore.
- Requests are signed with SigV4 (botocore) in `prepare()`, or carry a Bedrock
  API key as a bearer token.
- Bedrock-only options come from ``extra_body={"bedrock": {...}}`` (`BedrockOptions`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict
from pydantic_core import from_json, to_json

from .._errors import ProviderError, RequestError
from .._request import (
    AssistantMessage,
    ChatRequest,
    ContentPart,
    EmbeddingsRequest,
    FilePart,
    ImagePart,
    RefusalPart,
    TextPart,
    ToolMessage,
    UserMessage,
)
from .._transports import HttpRequest
from .._types import (
    ChatCompletion,
    ChatCompletionMessageToolCall,
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingUsage,
)
from ._base import (
    NO_EXTRA,
    ExtraRequest,
    ProviderAdapter,
    StreamDecoder,
    model_path,
    parse_retry_after,
)
from ._bedrock_auth import SigV4Signer, require_botocore, resolve_region
from ._bedrock_stream import (
    BROKEN,
    BedrockStreamDecoder,
    classify_bedrock_error,
    finish_reason,
    usage_from,
)
from ._translate import (
    RESPONSE_TOOL,
    completion,
    file_data,
    image_data,
    json_output,
    malformed,
    parse_tool_arguments,
    refuse,
    refuse_unsupported,
    stop_sequences,
    tool_call,
    tool_choice,
    user_parts,
    vendor_options,
)
from .configs import BedrockProviderConfig

__all__ = ["BedrockAdapter", "BedrockOptions"]

_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html", "text/plain": "txt", "text/markdown": "md",
}  # fmt: skip


class BedrockOptions(BaseModel):
    """Bedrock-only request options, passed as ``extra_body={"bedrock": {...}}``.

    Attributes:
        additional_model_request_fields: model-specific fields Converse passes
            to the model (``{"top_k": 5}``, Claude's ``thinking``...).
        guardrail_config: ``{"guardrailIdentifier", "guardrailVersion", "trace"}``.
        performance_config: ``{"latency": "standard" | "optimized"}``.
        request_metadata: key-value pairs recorded with the invocation.
        input_type: Cohere embeddings only: ``search_document``, ``search_query``...
    """

    model_config = ConfigDict(extra="forbid")
    additional_model_request_fields: dict[str, Any] | None = None
    guardrail_config: dict[str, Any] | None = None
    performance_config: dict[str, Literal["standard", "optimized"]] | None = None
    request_metadata: dict[str, str] | None = None
    input_type: str | None = None


class BedrockAdapter(ProviderAdapter):
    """Chat Completions over Bedrock Converse; Titan and Cohere embeddings over InvokeModel."""

    stream_framing: ClassVar[Literal["lines", "bytes"]] = "bytes"
    needs_prepare = True
    config: BedrockProviderConfig

    def __init__(self, name: str, config: BedrockProviderConfig) -> None:
        super().__init__(name, config)
        require_botocore(name)
        self.otel_name = "aws.bedrock"
        self.prices_id = "aws"
        self.region = resolve_region(name, config)
        self.base_url = (
            config.base_url or f"https://bedrock-runtime.{self.region}.amazonaws.com"
        ).rstrip("/")
        headers = {"content-type": "application/json", "accept": "application/json"}
        self._signer: SigV4Signer | None = None
        if config.api_key is not None:
            headers["authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        else:
            self._signer = SigV4Signer(name, config, self.region)
        headers.update({k.lower(): v for k, v in config.headers.items()})
        self._headers = headers

    @staticmethod
    def new_id() -> str:
        """An id for a completion (Converse answers carry none)."""
        return f"bedrock-{uuid.uuid4().hex}"

    def _url(self, model: str, operation: str, extra: ExtraRequest) -> str:
        # ':' stays literal: every HTTP engine sends it as is, so the signed path is the sent one
        url = f"{self.base_url}/model/{model_path(model, safe=':')}/{operation}"
        return f"{url}?{urlencode(extra.query, doseq=True)}" if extra.query else url

    def _http(
        self, url: str, body: dict[str, Any], extra: ExtraRequest, *, stream: bool = False
    ) -> HttpRequest:
        headers = dict(self._headers)
        if stream:
            headers["accept"] = "application/vnd.amazon.eventstream"
        headers.update({k.lower(): v for k, v in (extra.headers or {}).items()})
        return HttpRequest("POST", url, headers, to_json(body))

    async def prepare(self, request: HttpRequest) -> HttpRequest:
        if self._signer is None:
            return request
        return await self._signer.sign(request)

    # ------------------------------------------------------------ chat requests

    def uses_response_tool(self, request: ChatRequest) -> bool:
        """Whether this request's structured output travels through the forced response tool."""
        fmt = json_output(request, self.name)
        return fmt is not None and (self.config.structured_output == "tool" or fmt.schema is None)

    def chat_request(
        self, request: ChatRequest, model: str, *, stream: bool, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        body = self.build_body(request)
        url = self._url(model, "converse-stream" if stream else "converse", extra)
        return self._http(url, body, extra, stream=stream)

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        """The Converse body for `request` (the model is in the URL)."""
        name = self.name
        refuse_unsupported(request, name)
        if request.reasoning_effort is not None:
            raise refuse(name, "reasoning_effort (pass the model's own fields in "
                         "extra_body={'bedrock': {'additional_model_request_fields': ...}})",
                         param="reasoning_effort")  # fmt: skip
        if request.temperature is not None and request.temperature > 1:
            raise refuse(name, f"temperature {request.temperature} (Converse accepts 0-1)",
                         param="temperature")  # fmt: skip
        options = vendor_options(request, "bedrock", BedrockOptions, name) or BedrockOptions()
        system, messages = self._messages(request)
        body: dict[str, Any] = {"messages": messages}
        if system:
            body["system"] = system
        inference = {
            "maxTokens": request.output_limit, "temperature": request.temperature,
            "topP": request.top_p, "stopSequences": stop_sequences(request),
        }  # fmt: skip
        inference = {k: v for k, v in inference.items() if v is not None}
        if inference:
            body["inferenceConfig"] = inference
        self._add_tools(request, messages, body)
        fmt = json_output(request, name)
        if fmt is not None and not self.uses_response_tool(request):
            structure: dict[str, Any] = {
                "schema": to_json(fmt.object_schema).decode(),
                "name": fmt.name,
            }
            if fmt.description:
                structure["description"] = fmt.description
            body["outputConfig"] = {
                "textFormat": {"type": "json_schema", "structure": {"jsonSchema": structure}}
            }
        wire = {
            "additionalModelRequestFields": options.additional_model_request_fields,
            "guardrailConfig": options.guardrail_config,
            "performanceConfig": options.performance_config,
            "requestMetadata": options.request_metadata,
        }
        body.update({k: v for k, v in wire.items() if v is not None})
        return body

    def _add_tools(
        self, request: ChatRequest, messages: list[dict[str, Any]], body: dict[str, Any]
    ) -> None:
        name = self.name
        tools = [
            {"toolSpec": {
                "name": tool.function.name,
                **({"description": tool.function.description} if tool.function.description else {}),
                "inputSchema": {"json": tool.function.parameters or {"type": "object", "properties": {}}},
            }}
            for tool in request.tools or ()
        ]  # fmt: skip
        choice = tool_choice(request, name)
        forced: dict[str, Any] | None = None
        if choice is not None and choice.mode == "required":
            forced = {"any": {}}
        elif choice is not None and choice.mode == "function":
            forced = {"tool": {"name": choice.name}}
        elif choice is not None and choice.mode == "auto":
            forced = {"auto": {}}
        if self.uses_response_tool(request):
            tools.append(self._response_tool(request, tools))
            if choice is None or choice.mode != "function":
                user_tools = len(tools) > 1 and (choice is None or choice.mode != "none")
                forced = {"any": {}} if user_tools else {"tool": {"name": RESPONSE_TOOL}}
        elif choice is not None and choice.mode == "none":
            if any("toolUse" in block or "toolResult" in block
                   for turn in messages for block in turn["content"]):  # fmt: skip
                raise refuse(name, "tool_choice 'none' in a conversation with tool calls "
                             "(Converse needs the tools defined there and cannot forbid "
                             "calling them)", param="tool_choice")  # fmt: skip
            return
        if not tools:
            return
        config: dict[str, Any] = {"tools": tools}
        if forced is not None:
            config["toolChoice"] = forced
        body["toolConfig"] = config

    def _response_tool(self, request: ChatRequest, tools: list[dict[str, Any]]) -> dict[str, Any]:
        fmt = json_output(request, self.name)
        assert fmt is not None
        schema = fmt.object_schema
        if schema.get("type", "object") != "object":
            raise refuse(self.name, "a response_format schema whose root is not an object "
                         "(it travels as a tool input)", param="response_format")  # fmt: skip
        if any(t["toolSpec"]["name"] == RESPONSE_TOOL for t in tools):
            raise RequestError(f"a tool may not be called {RESPONSE_TOOL!r} when "
                               "response_format asks for JSON", param="tools")  # fmt: skip
        described = fmt.description or f"the {fmt.name} object"
        return {"toolSpec": {
            "name": RESPONSE_TOOL,
            "description": f"Give the final answer by calling this tool with {described}.",
            "inputSchema": {"json": schema},
        }}  # fmt: skip

    # ------------------------------------------------------------ messages

    def _messages(self, request: ChatRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for message in request.messages:
            if isinstance(message, UserMessage):
                role, blocks = "user", self._blocks(message.content, "user messages")
            elif isinstance(message, AssistantMessage):
                role, blocks = "assistant", self._assistant_blocks(message)
            elif isinstance(message, ToolMessage):
                role, blocks = "user", [self._tool_result(message)]
            else:
                system.extend(self._blocks(message.content, "system messages", text_only=True))
                continue
            if not blocks:
                continue
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
        return system, turns

    def _blocks(self, content: Any, where: str, *, text_only: bool = False) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for part in user_parts(content):
            block = self._block(part, where, text_only=text_only)
            if block is None:
                continue
            blocks.append(block)
            if (part.model_extra or {}).get("cache_control") is not None:
                blocks.append({"cachePoint": {"type": "default"}})
        return blocks

    def _block(self, part: ContentPart, where: str, *, text_only: bool) -> dict[str, Any] | None:
        name = self.name
        if isinstance(part, TextPart | RefusalPart):
            text = part.text if isinstance(part, TextPart) else part.refusal
            return {"text": text} if text else None
        if not text_only and isinstance(part, ImagePart):
            image = image_data(part, name, urls=False)
            assert not isinstance(image, str)
            fmt = _IMAGE_FORMATS.get(image.format)
            if fmt is None:
                raise refuse(name, f"images of type {image.media_type}", param="messages")
            return {"image": {"format": fmt, "source": {"bytes": image.data}}}
        if not text_only and isinstance(part, FilePart):
            document = file_data(part, name)
            doc_format = _DOCUMENT_FORMATS.get(document.media_type)
            if doc_format is None:
                raise refuse(name, f"documents of type {document.media_type}", param="messages")
            filename = str(part.file.get("filename") or "document")
            stem = "".join(
                c if c.isalnum() or c in " -()[]" else "-" for c in filename.rsplit(".", 1)[0]
            )
            return {"document": {"format": doc_format, "name": stem or "document",
                                 "source": {"bytes": document.data}}}  # fmt: skip
        raise refuse(name, f"{part.type} content in {where}", param="messages")

    def _assistant_blocks(self, message: AssistantMessage) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for thinking in (message.model_extra or {}).get("thinking_blocks") or ():
            kind = thinking.get("type") if isinstance(thinking, dict) else None
            if kind == "thinking":
                text = {"text": thinking.get("thinking", "")}
                if thinking.get("signature"):
                    text["signature"] = thinking["signature"]
                blocks.append({"reasoningContent": {"reasoningText": text}})
            elif kind == "redacted_thinking":
                blocks.append({"reasoningContent": {"redactedContent": thinking.get("data")}})
            else:
                raise RequestError("thinking_blocks must be thinking or redacted_thinking "
                                   "blocks", param="messages")  # fmt: skip
        blocks.extend(self._blocks(message.content or "", "assistant messages", text_only=True))
        for call in message.tool_calls or ():
            blocks.append({"toolUse": {
                "toolUseId": call.id, "name": call.function.name,
                "input": parse_tool_arguments(call, self.name),
            }})  # fmt: skip
        return blocks

    def _tool_result(self, message: ToolMessage) -> dict[str, Any]:
        # Converse refuses an empty result and blank text
        content = self._blocks(message.content, "tool messages") or [{"text": "(empty result)"}]
        content = [block for block in content if "cachePoint" not in block]
        return {"toolResult": {"toolUseId": message.tool_call_id, "content": content}}

    # ------------------------------------------------------------ responses

    def parse_chat(self, body: bytes, model: str) -> ChatCompletion:
        try:
            data = from_json(body)
            blocks = data["output"]["message"]["content"]
            stop = data.get("stopReason")
            usage = data.get("usage")
        except (ValueError, KeyError, TypeError) as exc:
            raise malformed(self.name, model, body, "no output.message.content") from exc
        if stop in BROKEN:
            raise self.stream_error("ModelErrorException", body)
        texts: list[str] = []
        reasoning: list[str] = []
        thinking_blocks: list[dict[str, Any]] = []
        calls: list[ChatCompletionMessageToolCall] = []
        try:
            for block in blocks:
                if "text" in block:
                    texts.append(block["text"])
                elif "toolUse" in block:
                    use = block["toolUse"]
                    if use["name"] == RESPONSE_TOOL:
                        texts.append(to_json(use["input"]).decode())
                    else:
                        calls.append(tool_call(use["toolUseId"], use["name"], use["input"]))
                elif "reasoningContent" in block:
                    thinking_blocks.append(_thinking_block(block["reasoningContent"], reasoning))
        except (KeyError, TypeError) as exc:
            raise malformed(self.name, model, body, f"a content block without {exc}") from exc
        extra: dict[str, Any] = {}
        if thinking_blocks:
            extra = {"reasoning_content": "".join(reasoning), "thinking_blocks": thinking_blocks}
        return completion(
            completion_id=self.new_id(), model=model, content="".join(texts) if texts else None,
            tool_calls=calls, finish_reason=finish_reason(stop, tool_calls=bool(calls)),
            usage=usage_from(usage) if isinstance(usage, dict) else None, message_extra=extra,
        )  # fmt: skip

    def stream_decoder(self, request: ChatRequest, model: str) -> StreamDecoder:
        return BedrockStreamDecoder(self, model, json_tool=self.uses_response_tool(request))

    # ------------------------------------------------------------ embeddings

    def embeddings_request(
        self, request: EmbeddingsRequest, model: str, *, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        name = self.name
        unknown = sorted(set(request.model_extra or {}) - {"bedrock"})
        if unknown:
            raise refuse(
                name, f"the embeddings parameter(s) {', '.join(unknown)}", param=unknown[0]
            )
        if request.encoding_format == "base64":
            raise refuse(name, "base64 embeddings (Bedrock returns floats: ask for "
                         "encoding_format='float')", param="encoding_format")  # fmt: skip
        options = BedrockOptions.model_validate((request.model_extra or {}).get("bedrock") or {})
        texts = [request.input] if isinstance(request.input, str) else request.input
        if not all(isinstance(t, str) for t in texts):
            raise refuse(name, "token-id inputs to embeddings (send text)", param="input")
        body: dict[str, Any]
        if "cohere.embed" in model:
            body = {"texts": texts, "input_type": options.input_type or "search_document"}
            if request.dimensions is not None:
                raise refuse(name, "dimensions for Cohere embeddings", param="dimensions")
        elif "titan-embed" in model:
            if len(texts) != 1:
                raise refuse(name, "several inputs in one Titan embeddings request (Titan "
                             "embeds one text per call)", param="input")  # fmt: skip
            body = {"inputText": texts[0]}
            if request.dimensions is not None:
                body["dimensions"] = request.dimensions
        else:
            raise refuse(name, f"embeddings with model {model!r} (Amazon Titan and Cohere "
                         "embedding models are supported)", param="model")  # fmt: skip
        return self._http(self._url(model, "invoke", extra), body, extra)

    def parse_embeddings(self, body: bytes, model: str) -> CreateEmbeddingResponse:
        try:
            data = from_json(body)
            if "embedding" in data:  # Titan
                vectors = [data["embedding"]]
                tokens = data.get("inputTextTokenCount")
            else:  # Cohere: a list of vectors, or {"float": [...]} when types were asked for
                found = data["embeddings"]
                vectors = found["float"] if isinstance(found, dict) else found
                tokens = None
        except (ValueError, KeyError, TypeError) as exc:
            raise malformed(self.name, model, body, "no embeddings") from exc
        usage = (
            EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
            if isinstance(tokens, int)
            else None
        )
        return CreateEmbeddingResponse(
            data=[Embedding(index=i, embedding=v) for i, v in enumerate(vectors)],
            model=model, usage=usage,
        )  # fmt: skip

    # ------------------------------------------------------------ errors

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        message, kind = _error_fields(body)
        kind = headers.get("x-amzn-errortype") or kind
        cls = classify_bedrock_error(status, kind)
        if message is None:
            text = body[:200].decode("utf-8", "replace").strip() or "(empty body)"
            message = f"HTTP {status} with a non-Bedrock error body: {text}"
        return cls(
            message, provider=self.name, status=status, retry_after=parse_retry_after(headers),
            request_id=headers.get("x-amzn-requestid"), body=body,
            code=kind.split(":", 1)[0] if kind else None,
        )  # fmt: skip

    def stream_error(self, kind: str, payload: bytes) -> ProviderError:
        """The error for an exception event inside a stream (or a broken answer)."""
        message, _ = _error_fields(payload)
        if message is None:
            message = payload[:200].decode("utf-8", "replace").strip() or kind
        cls = classify_bedrock_error(200, kind)
        return cls(message, provider=self.name, status=200, body=payload, code=kind)


def _thinking_block(reasoning: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    if "redactedContent" in reasoning:
        return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
    text = reasoning["reasoningText"]
    texts.append(text["text"])
    return {"type": "thinking", "thinking": text["text"], "signature": text.get("signature")}


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    """(message, error type) from a Bedrock error body ``{"message": ..., "__type"?: ...}``."""
    try:
        data = from_json(body)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    message = data.get("message") or data.get("Message")
    kind = data.get("__type")
    return (
        message if isinstance(message, str) else None,
        kind if isinstance(kind, str) else None,
    )
