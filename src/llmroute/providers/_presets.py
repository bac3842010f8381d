"""OpenAI-compatible services, as rows of data.

Each preset is the OpenAI adapter with a different base URL, key variable and
quirks. Adding a service is adding a row.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRESETS", "Preset"]


@dataclass(frozen=True, slots=True)
class Preset:
    """An OpenAI-compatible service.

    Attributes:
        base_url: the API root; ``/chat/completions`` is appended.
        key_env: the environment variable holding the API key (None: no key needed).
        base_url_env: an environment variable that overrides `base_url`.
        otel_name: the OpenTelemetry ``gen_ai.provider.name``.
        prices_id: the genai-prices provider id (None: no public prices).
        stream_usage: whether the service accepts ``stream_options.include_usage``;
            where it does not, llmroute takes usage from whatever chunk carries
            it, or estimates it and marks it estimated.
        embeddings: whether the service offers ``/embeddings``.
        responses: whether the service serves OpenAI's Responses API (``/responses``)
            natively; where it does not, llmroute translates a Responses request
            into a chat completion (docs/responses.md).
    """

    base_url: str
    key_env: str | None
    base_url_env: str | None = None
    otel_name: str = "openai"
    prices_id: str | None = None
    stream_usage: bool = True
    embeddings: bool = True
    responses: bool = False


PRESETS: dict[str, Preset] = {
    "openai": Preset(
        "https://api.openai.com/v1", "OPENAI_API_KEY", "OPENAI_BASE_URL", "openai", "openai",
        responses=True,
    ),
    "groq": Preset("https://api.groq.com/openai/v1", "GROQ_API_KEY", None, "groq", "groq",
                   embeddings=False),
    "together": Preset("https://api.together.xyz/v1", "TOGETHER_API_KEY", None, "together",
                       "together"),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY", None,
                        "fireworks", "fireworks"),
    "mistral": Preset("https://api.mistral.ai/v1", "MISTRAL_API_KEY", None, "mistral_ai",
                      "mistral", stream_usage=False),
    "deepseek": Preset("https://api.deepseek.com", "DEEPSEEK_API_KEY", None, "deepseek",
                       "deepseek", embeddings=False),
    "xai": Preset("https://api.x.ai/v1", "XAI_API_KEY", None, "x_ai", "x-ai"),
    "openrouter": Preset("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", None, "openrouter",
                         "openrouter"),
    "perplexity": Preset("https://api.perplexity.ai", "PERPLEXITY_API_KEY", None, "perplexity",
                         "perplexity", stream_usage=False, embeddings=False),
    "cerebras": Preset("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY", None, "cerebras",
                       "cerebras", embeddings=False),
    "ollama": Preset("http://localhost:11434/v1", None, "OLLAMA_BASE_URL", "ollama"),
    "vllm": Preset("http://localhost:8000/v1", None, "VLLM_BASE_URL", "vllm"),
    "lmstudio": Preset("http://localhost:1234/v1", None, "LMSTUDIO_BASE_URL", "lmstudio",
                       stream_usage=False),
}  # fmt: skip
