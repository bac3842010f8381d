"""The Gemini adapter: Chat Completions and Embeddings over the Gemini API (Generative Language).

What the translation does:

- system and developer messages become ``systemInstruction``; assistant turns
  become ``model`` contents; tool results become ``functionResponse`` parts
  (named after the call they answer); consecutive turns of one role merge.
- Function calls carry no ids: llmroute derives stable ones from the response
  id, the candidate, the call's position and its name. Their thought signatures
  ride on the tool call as ``extra_content.google.thought_signature`` and go
  back to Gemini with the call (Gemini 3 requires them in a tool loop).
- ``response_format`` becomes ``responseMimeType: application/json`` plus
  ``responseJsonSchema``; ``n`` becomes ``candidateCount``; ``reasoning_effort``
  becomes ``thinkingConfig``.
- Gemini-only options (``top_k``, ``thinking_config``, ``safety_settings``,
  ``cached_content``) come from ``extra_body={"gemini": {...}}`` (`GeminiOptions`).
- A blocked prompt raises `ContentFiltered`; a safety stop is ``content_filter``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import from_json, to_json

from .._errors import ProviderError, RequestError
from .._request import (
    AssistantMessage,
    AudioPart,
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
from .._types import ChatCompletion, CreateEmbeddingResponse, Embedding, EmbeddingUsage
from ._base import (
    NO_EXTRA,
    ExtraRequest,
    ProviderAdapter,
    StreamDecoder,
    model_path,
    parse_retry_after,
)
from ._gemini_wire import (
    GeminiStreamDecoder,
    classify_gemini_error,
    gemini_error_fields,
    parse_gemini_chat,
    thought_signature,
)
from ._translate import (
    file_data,
    image_data,
    json_output,
    malformed,
    parse_tool_arguments,
    refuse,
    refuse_unsupported,
    stop_sequences,
    text_of,
    tool_choice,
    user_parts,
    vendor_options,
)
from .configs import GeminiProviderConfig

__all__ = ["GeminiAdapter", "GeminiOptions", "GeminiSafetySetting", "GeminiThinkingConfig"]

_DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
#: Sent in place of a missing thought signature on a replayed function call (a history
#: from another model, or a client that dropped it): Google documents it as skipping the
#: validation Gemini 3 applies to function calls of the current turn.
_SKIP_SIGNATURE = "skip_thought_signature_validator"
_LEVELS = {"minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH", "xhigh": "XHIGH"}


class GeminiThinkingConfig(BaseModel):
    """Gemini's ``thinkingConfig``: a token budget (2.5 models) or a level (Gemini 3)."""

    model_config = ConfigDict(extra="forbid")
    include_thoughts: bool | None = None
    thinking_budget: int | None = Field(default=None, ge=-1)
    thinking_level: Literal["MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH"] | None = None

    def wire(self) -> dict[str, Any]:
        names = {"include_thoughts": "includeThoughts", "thinking_budget": "thinkingBudget",
                 "thinking_level": "thinkingLevel"}  # fmt: skip
        return {names[k]: v for k, v in self.model_dump(exclude_none=True).items()}


class GeminiSafetySetting(BaseModel):
    """One safety setting: a harm category and the threshold that blocks it."""

    model_config = ConfigDict(extra="forbid")
    category: str
    threshold: str


class GeminiOptions(BaseModel):
    """Gemini-only request options, passed as ``extra_body={"gemini": {...}}``.

    Attributes:
        top_k: sample from the top K tokens only.
        thinking_config: thinking budget or level, and whether thoughts are
            returned (as ``reasoning_content``); overrides ``reasoning_effort``.
        safety_settings: per-category block thresholds.
        cached_content: the name of a cached content (``cachedContents/...``).
    """

    model_config = ConfigDict(extra="forbid")
    top_k: int | None = Field(default=None, ge=1)
    thinking_config: GeminiThinkingConfig | None = None
    safety_settings: list[GeminiSafetySetting] = Field(default_factory=list)
    cached_content: str | None = None


class GeminiEmbeddingOptions(BaseModel):
    """Gemini-only embeddings options (``extra_body={"gemini": {...}}``)."""

    model_config = ConfigDict(extra="forbid")
    task_type: str | None = None
    title: str | None = None


class GeminiAdapter(ProviderAdapter):
    """Chat Completions and Embeddings over the Gemini API."""

    config: GeminiProviderConfig
    thought_signatures = True

    def __init__(self, name: str, config: GeminiProviderConfig) -> None:
        super().__init__(name, config)
        self.otel_name = "gcp.gemini"
        self.prices_id = "google"
        self.base_url = (config.base_url or _DEFAULT_BASE_URL).rstrip("/")
        headers = {"content-type": "application/json", "accept": "application/json"}
        if config.api_key is not None:
            headers["x-goog-api-key"] = config.api_key.get_secret_value()
        headers.update({k.lower(): v for k, v in config.headers.items()})
        self._headers = headers

    def _url(self, model: str, method: str, query: Mapping[str, object] | None) -> str:
        path = model if "/" in model else f"models/{model}"
        url = f"{self.base_url}/{model_path(path, safe='/')}:{method}"
        if query:
            url = f"{url}?{urlencode(query, doseq=True)}"
        return url

    def _http(
        self, url: str, body: dict[str, Any], extra: ExtraRequest, *, sse: bool
    ) -> HttpRequest:
        headers = self._headers
        if sse or extra.headers:
            headers = dict(headers)
            if sse:
                headers["accept"] = "text/event-stream"
            headers.update({k.lower(): v for k, v in (extra.headers or {}).items()})
        return HttpRequest("POST", url, headers, to_json(body))

    # ------------------------------------------------------------ chat

    def chat_request(
        self, request: ChatRequest, model: str, *, stream: bool, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        body = self.build_body(request, model)
        query: dict[str, object] = dict(extra.query or {})
        if stream:
            query["alt"] = "sse"
        url = self._url(model, "streamGenerateContent" if stream else "generateContent", query)
        return self._http(url, body, extra, sse=stream)

    def build_body(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The ``generateContent`` body for `request`."""
        name = self.name
        refuse_unsupported(
            request, name, supported=("n", "seed", "presence_penalty", "frequency_penalty")
        )
        options = vendor_options(request, "gemini", GeminiOptions, name) or GeminiOptions()
        system, contents = self._contents(request, model)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": text} for text in system]}
        self._add_tools(request, body)
        body["generationConfig"] = self._generation_config(request, options)
        if options.safety_settings:
            body["safetySettings"] = [s.model_dump() for s in options.safety_settings]
        if options.cached_content:
            body["cachedContent"] = options.cached_content
        if not body["generationConfig"]:
            del body["generationConfig"]
        return body

    def _generation_config(self, request: ChatRequest, options: GeminiOptions) -> dict[str, Any]:
        config: dict[str, Any] = {}
        simple = {
            "temperature": request.temperature, "topP": request.top_p, "topK": options.top_k,
            "maxOutputTokens": request.output_limit, "stopSequences": stop_sequences(request),
            "candidateCount": request.n, "seed": request.seed,
            "presencePenalty": request.presence_penalty,
            "frequencyPenalty": request.frequency_penalty,
        }  # fmt: skip
        config.update({k: v for k, v in simple.items() if v is not None})
        fmt = json_output(request, self.name)
        if fmt is not None:
            config["responseMimeType"] = "application/json"
            if fmt.schema is not None:
                config["responseJsonSchema"] = fmt.schema
        thinking = self._thinking(request, options)
        if thinking:
            config["thinkingConfig"] = thinking
        return config

    def _thinking(self, request: ChatRequest, options: GeminiOptions) -> dict[str, Any]:
        if options.thinking_config is not None:
            return options.thinking_config.wire()
        effort = request.reasoning_effort
        if effort is None:
            return {}
        if effort == "none":
            return {"thinkingBudget": 0}
        if effort not in _LEVELS:
            raise refuse(self.name, f"reasoning_effort {effort!r}", param="reasoning_effort")
        return {"thinkingLevel": _LEVELS[effort]}

    def _add_tools(self, request: ChatRequest, body: dict[str, Any]) -> None:
        declarations = []
        for tool in request.tools or ():
            function = tool.function
            declaration: dict[str, Any] = {"name": function.name}
            if function.description:
                declaration["description"] = function.description
            if function.parameters:
                declaration["parametersJsonSchema"] = function.parameters
            declarations.append(declaration)
        if declarations:
            body["tools"] = [{"functionDeclarations": declarations}]
        choice = tool_choice(request, self.name)
        if choice is None or not declarations:
            return
        config: dict[str, Any] = {
            "mode": {"none": "NONE", "auto": "AUTO", "required": "ANY", "function": "ANY"}[
                choice.mode
            ]
        }
        if choice.mode == "function":
            config["allowedFunctionNames"] = [choice.name]
        body["toolConfig"] = {"functionCallingConfig": config}

    # ------------------------------------------------------------ contents

    def _contents(self, request: ChatRequest, model: str) -> tuple[list[str], list[dict[str, Any]]]:
        system: list[str] = []
        contents: list[dict[str, Any]] = []
        names: dict[str, str] = {}  # tool call id -> function name, for the results
        sign = not model.startswith(("gemini-1", "gemini-2"))
        for message in request.messages:
            if isinstance(message, UserMessage):
                role, parts = "user", [self._part(p) for p in user_parts(message.content)]
            elif isinstance(message, AssistantMessage):
                role, parts = "model", self._model_parts(message, names, sign=sign)
            elif isinstance(message, ToolMessage):
                role, parts = "user", [self._function_response(message, names)]
            else:
                text = text_of(message.content, self.name, "system messages")
                if text:
                    system.append(text)
                continue
            parts = [p for p in parts if p is not None]
            if not parts:
                continue
            if contents and contents[-1]["role"] == role:
                contents[-1]["parts"].extend(parts)
            else:
                contents.append({"role": role, "parts": parts})
        return system, contents

    def _part(self, part: ContentPart) -> dict[str, Any] | None:
        name = self.name
        if isinstance(part, TextPart):
            return {"text": part.text} if part.text else None
        if isinstance(part, RefusalPart):
            return {"text": part.refusal} if part.refusal else None
        if isinstance(part, ImagePart):
            image = image_data(part, name, urls=False)
            assert not isinstance(image, str)
            return {"inlineData": {"mimeType": image.media_type, "data": image.data}}
        if isinstance(part, AudioPart):
            audio = part.input_audio
            return {"inlineData": {"mimeType": f"audio/{audio.format}", "data": audio.data}}
        if isinstance(part, FilePart):
            document = file_data(part, name)
            return {"inlineData": {"mimeType": document.media_type, "data": document.data}}
        raise refuse(name, f"{part.type} content", param="messages")  # pragma: no cover

    def _model_parts(
        self, message: AssistantMessage, names: dict[str, str], *, sign: bool
    ) -> list[dict[str, Any] | None]:
        parts: list[dict[str, Any] | None] = []
        text = text_of(message.content, self.name, "assistant messages")
        if text:
            parts.append({"text": text})
        for position, call in enumerate(message.tool_calls or ()):
            names[call.id] = call.function.name
            part: dict[str, Any] = {
                "functionCall": {"name": call.function.name,
                                 "args": parse_tool_arguments(call, self.name)}
            }  # fmt: skip
            signature = thought_signature(call.model_extra)
            if signature is None and sign and position == 0:
                signature = _SKIP_SIGNATURE
            if signature is not None:
                part["thoughtSignature"] = signature
            parts.append(part)
        return parts

    def _function_response(self, message: ToolMessage, names: dict[str, str]) -> dict[str, Any]:
        name = names.get(message.tool_call_id)
        if name is None:
            raise RequestError(
                f"tool message {message.tool_call_id!r} answers no earlier tool call; Gemini "
                "needs the function's name",
                param="messages",
            )
        text = text_of(message.content, self.name, "tool messages")
        try:
            value = from_json(text) if text.strip() else ""
        except ValueError:
            value = text
        response = value if isinstance(value, dict) else {"result": value}
        return {"functionResponse": {"name": name, "response": response}}

    # ------------------------------------------------------------ responses

    def parse_chat(self, body: bytes, model: str) -> ChatCompletion:
        return parse_gemini_chat(self, body, model)

    def stream_decoder(self, request: ChatRequest, model: str) -> StreamDecoder:
        return GeminiStreamDecoder(self, model)

    # ------------------------------------------------------------ embeddings

    def embeddings_request(
        self, request: EmbeddingsRequest, model: str, *, extra: ExtraRequest = NO_EXTRA
    ) -> HttpRequest:
        name = self.name
        unknown = sorted(set(request.model_extra or {}) - {"gemini"})
        if unknown:
            raise refuse(name, f"the embeddings parameter(s) {', '.join(unknown)}",
                         param=unknown[0])  # fmt: skip
        raw = (request.model_extra or {}).get("gemini")
        options = GeminiEmbeddingOptions.model_validate(raw or {})
        if request.encoding_format == "base64":
            raise refuse(name, "base64 embeddings (Gemini returns floats: ask for "
                         "encoding_format='float')", param="encoding_format")  # fmt: skip
        texts = request.input
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise refuse(name, "token-id inputs to embeddings (send text)", param="input")
        path = model if "/" in model else f"models/{model}"
        entries = []
        for text in texts:
            entry: dict[str, Any] = {"model": path, "content": {"parts": [{"text": text}]}}
            if request.dimensions is not None:
                entry["outputDimensionality"] = request.dimensions
            if options.task_type:
                entry["taskType"] = options.task_type
            if options.title:
                entry["title"] = options.title
            entries.append(entry)
        if isinstance(request.input, str):
            url = self._url(model, "embedContent", extra.query)
            return self._http(url, entries[0], extra, sse=False)
        url = self._url(model, "batchEmbedContents", extra.query)
        return self._http(url, {"requests": entries}, extra, sse=False)

    def parse_embeddings(self, body: bytes, model: str) -> CreateEmbeddingResponse:
        try:
            data = from_json(body)
            vectors = (
                [data["embedding"]["values"]] if "embedding" in data
                else [item["values"] for item in data["embeddings"]]
            )  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise malformed(self.name, model, body, "no embedding values") from exc
        usage = None
        metadata = data.get("usageMetadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("promptTokenCount"), int):
            tokens = metadata["promptTokenCount"]
            usage = EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
        return CreateEmbeddingResponse(
            data=[Embedding(index=i, embedding=v) for i, v in enumerate(vectors)],
            model=model,
            usage=usage,
        )

    # ------------------------------------------------------------ errors

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        message, name, reason, delay = gemini_error_fields(body)
        cls = classify_gemini_error(status, name, reason)
        if message is None:
            text = body[:200].decode("utf-8", "replace").strip() or "(empty body)"
            message = f"HTTP {status} with a non-Gemini error body: {text}"
        return cls(
            message,
            provider=self.name,
            status=status,
            retry_after=delay if delay is not None else parse_retry_after(headers),
            request_id=headers.get("x-request-id"),
            body=body,
            code=reason or name,
        )
