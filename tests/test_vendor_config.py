"""Configuring the Anthropic, Gemini, Azure and Bedrock providers: keys, environment, zero config."""

from __future__ import annotations

import importlib
from typing import Any

import jsonschema
import pytest
import yaml

import llmroute
from _helpers import HI
from llmroute._config_load import providers_from_env
from llmroute.providers import provider_spec, provider_types
from llmroute.providers.configs import (
    AnthropicProviderConfig,
    AzureProviderConfig,
    BedrockProviderConfig,
    GeminiProviderConfig,
)

pytestmark = pytest.mark.anyio

ENDPOINT = "https://contoso.openai.azure.com"


class Capture:
    """A provider's wire that keeps each request and refuses it (a 400: not retried)."""

    def __init__(self) -> None:
        self.requests: list[llmroute.HttpRequest] = []
        self.transport = llmroute.HandlerTransport(self._handle)

    def _handle(self, request: llmroute.HttpRequest) -> llmroute.HandlerResponse:
        self.requests.append(request)
        return llmroute.HandlerResponse(400, json={"error": {"message": "captured"}})


async def first_request(router: llmroute.AsyncRouter, model: str, wire: Capture) -> Any:
    with pytest.raises(llmroute.LLMRouteError):
        await router.chat.completions.create(model=model, messages=HI)
    return wire.requests[-1]


def test_types_are_registered_with_their_otel_and_price_ids() -> None:
    assert {"anthropic", "gemini", "azure", "bedrock"} <= set(provider_types())
    configs = {
        "anthropic": AnthropicProviderConfig(type="anthropic", api_key="k"),
        "gemini": GeminiProviderConfig(type="gemini", api_key="k"),
        "azure": AzureProviderConfig(type="azure", endpoint=ENDPOINT, api_key="k"),
        "bedrock": BedrockProviderConfig(type="bedrock", region="us-west-2", api_key="k"),
    }
    names = {"anthropic": ("anthropic", "anthropic"), "gemini": ("gcp.gemini", "google"),
             "azure": ("azure.ai.openai", "azure"), "bedrock": ("aws.bedrock", "aws")}  # fmt: skip
    for kind, config in configs.items():
        adapter = provider_spec(kind).adapter(kind, config)
        assert (adapter.otel_name, adapter.prices_id) == names[kind]


def test_the_registry_is_the_one_table_of_provider_types() -> None:
    """Each row's type is a `type` of its config model and back, and the config union is
    made of the registry's models, so a provider type cannot be half registered."""
    from typing import get_args

    from llmroute._config import Config
    from llmroute.providers import PROVIDERS, config_models

    listed = {
        type_name: model
        for model in config_models()
        for type_name in get_args(model.model_fields["type"].annotation)
    }
    assert listed == {type_name: spec.config for type_name, spec in PROVIDERS.items()}
    union = Config.model_fields["providers"].annotation
    members = get_args(get_args(get_args(union)[1])[0])  # dict[str, Annotated[Union[...], ...]]
    assert members == config_models()
    for spec in PROVIDERS.values():  # every adapter and transport reference resolves
        for ref in filter(None, (spec.adapter_ref, spec.transport_ref)):
            module, _, attribute = ref.partition(":")
            assert callable(
                getattr(importlib.import_module(module, "llmroute.providers"), attribute)
            )


def test_zero_config_detection() -> None:
    env = {
        "ANTHROPIC_API_KEY": "sk-ant", "GOOGLE_API_KEY": "AIza-google",
        "AZURE_OPENAI_API_KEY": "az", "AZURE_OPENAI_ENDPOINT": ENDPOINT,
        "OPENAI_API_VERSION": "2024-10-21", "AWS_BEARER_TOKEN_BEDROCK": "ABSK", "AWS_REGION": "eu-west-1",
    }  # fmt: skip
    found = providers_from_env(env)
    assert set(found) == {"anthropic", "gemini", "azure", "bedrock"}
    assert isinstance(found["gemini"], GeminiProviderConfig)
    assert found["gemini"].api_key is not None
    assert found["gemini"].api_key.get_secret_value() == "AIza-google"
    azure = found["azure"]
    assert isinstance(azure, AzureProviderConfig)
    assert (azure.endpoint, azure.api_version) == (ENDPOINT, "2024-10-21")
    bedrock = found["bedrock"]
    assert isinstance(bedrock, BedrockProviderConfig)
    assert (bedrock.region, bedrock.api_key is not None) == ("eu-west-1", True)
    keys = providers_from_env({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s",
                               "AWS_DEFAULT_REGION": "us-east-2"})["bedrock"]  # fmt: skip
    assert isinstance(keys, BedrockProviderConfig) and keys.aws_access_key_id is not None
    # incomplete sets register nothing
    partial = {
        "AZURE_OPENAI_API_KEY": "az",
        "AWS_BEARER_TOKEN_BEDROCK": "ABSK",
        "GEMINI_API_KEY": "",
    }
    assert providers_from_env(partial) == {}


async def test_zero_config_router_accepts_the_detected_providers() -> None:
    env = {"ANTHROPIC_API_KEY": "sk-ant", "GEMINI_API_KEY": "g"}
    async with llmroute.AsyncRouter(env=env) as router:
        with pytest.raises(llmroute.UnknownModel) as info:
            await router.chat.completions.create(model="nope", messages=HI)
        assert info.value.available == ("anthropic/*", "gemini/*")
        assert router.providers()["anthropic"].base_url == "https://api.anthropic.com"


MISSING = [
    ({"type": "anthropic"}, {}, "providers.p.api_key", "ANTHROPIC_API_KEY"),
    ({"type": "gemini"}, {}, "providers.p.api_key", "GEMINI_API_KEY"),
    ({"type": "azure", "api_key": "k"}, {}, "providers.p.endpoint", "AZURE_OPENAI_ENDPOINT"),
    ({"type": "azure", "endpoint": ENDPOINT}, {}, "providers.p.api_key", "AZURE_OPENAI_API_KEY"),
    ({"type": "bedrock", "aws_access_key_id": "AKID"}, {}, "providers.p", "aws_secret_access_key"),
]  # fmt: skip


@pytest.mark.parametrize(("provider", "env", "path", "message"), MISSING)
def test_missing_credentials_are_config_errors(provider: dict[str, Any], env: dict[str, str],
                                               path: str, message: str) -> None:  # fmt: skip
    with pytest.raises(llmroute.ConfigError, match=message) as info:
        llmroute.AsyncRouter({"providers": {"p": provider}}, env=env)
    assert info.value.path == path


async def test_environment_fills_configured_providers() -> None:
    env = {"ANTHROPIC_API_KEY": "sk-env", "ANTHROPIC_BASE_URL": "http://proxy/anthropic",
           "AZURE_OPENAI_ENDPOINT": ENDPOINT, "AZURE_OPENAI_AD_TOKEN": "entra-token",
           "AWS_REGION": "ap-south-1", "AWS_BEARER_TOKEN_BEDROCK": "ABSK"}  # fmt: skip
    data = {"providers": {"a": {"type": "anthropic"}, "z": {"type": "azure"},
                          "b": {"type": "bedrock"}, "signed": {"type": "bedrock", "profile": "x",
                                                               "region": "us-east-1"}}}  # fmt: skip
    wire = Capture()
    transports = {"a": wire.transport, "z": wire.transport}
    async with llmroute.AsyncRouter(data, env=env, transports=transports) as router:
        views = router.providers()
        claude = await first_request(router, "a/claude-x", wire)
        azure = await first_request(router, "z/deployment", wire)
    assert claude.url.startswith("http://proxy/anthropic/")
    assert claude.headers["x-api-key"] == "sk-env"
    assert azure.url.startswith(ENDPOINT)
    assert azure.headers["authorization"] == "Bearer entra-token"
    assert views["b"].base_url == "https://bedrock-runtime.ap-south-1.amazonaws.com"
    assert views["b"].has_key  # the bearer token from the environment
    assert not views["signed"].has_key  # a chosen profile signs with SigV4


def test_a_config_file_with_every_vendor_validates_against_the_schema() -> None:
    document = yaml.safe_load("""
providers:
  claude: {type: anthropic, api_key: sk-ant, max_tokens: 8192, betas: [b1], structured_output: native}
  gem: {type: gemini, api_key: AIza, timeout: 30s}
  az: {type: azure, endpoint: "https://contoso.openai.azure.com", api_key: k, api_version: "2024-10-21"}
  aws: {type: bedrock, region: us-east-1, profile: prod, structured_output: tool}
routes:
  chat: {targets: [claude/claude-sonnet-4-5, gem/gemini-2.5-flash, az/gpt-4o, aws/amazon.nova-pro-v1:0]}
""")
    jsonschema.validate(document, llmroute.Config.model_json_schema())
    llmroute.Config.model_validate(document)


def test_unknown_keys_list_the_vendor_keys() -> None:
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.AsyncRouter({"providers": {"c": {"type": "anthropic", "api_key": "k", "top_k": 3}}},
                             env={})  # fmt: skip
    problem = info.value.problems[0]
    assert problem.startswith("providers.c.top_k: unknown key; expected one of: ")
    assert "anthropic_version" in problem and "structured_output" in problem


async def test_an_azure_token_provider_given_in_code() -> None:
    config = AzureProviderConfig(type="azure", endpoint=ENDPOINT, token_provider=lambda: "tok")
    wire = Capture()
    async with llmroute.AsyncRouter(
        {"providers": {"az": config}}, env={}, transports={"az": wire.transport}
    ) as router:
        sent = await first_request(router, "az/d", wire)
    assert sent.headers["authorization"] == "Bearer tok"
