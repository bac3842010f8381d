"""Model names that could leave their provider's URL, or forge log lines, are refused
before any adapter builds a request (issue 15, finding 14)."""

from __future__ import annotations

from typing import Any

import pytest

from _helpers import HI
from _wire import Wire
from llmroute import AsyncRouter, RequestError
from llmroute._request import validate_chat_request
from llmroute.providers.azure import AzureAdapter
from llmroute.providers.bedrock import BedrockAdapter
from llmroute.providers.configs import (
    AzureProviderConfig,
    BedrockProviderConfig,
    GeminiProviderConfig,
)
from llmroute.providers.gemini import GeminiAdapter
from llmroute.routing.catalog import check_model_name

pytestmark = pytest.mark.anyio


BAD = [
    "../../admin/secret",
    "models/../../admin",
    "a/./b",
    "..",
    "gpt-4o?alt=x",
    "gpt-4o#frag",
    "gpt%2e%2e",
    "gpt-4o\nINFO forged line",
    "gpt 4o",
    "gpt\t4o",
    "gpt-4o\x1b[31m",
    "a\\..\\b",
]
GOOD = [
    "gpt-4o-mini",
    "ft:gpt-4o:org:custom:id",
    "claude-3-5-sonnet@20240620",
    "tunedModels/my-model",
    "arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude",
    "llama3.1:8b",
]


@pytest.mark.parametrize("name", BAD)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(RequestError) as caught:
        check_model_name(name)
    assert caught.value.param == "model"


@pytest.mark.parametrize("name", GOOD)
def test_real_names_pass(name: str) -> None:
    check_model_name(name)


async def test_the_router_sends_nothing_for_an_unsafe_direct_name() -> None:
    wire = Wire(text="never")
    config: dict[str, Any] = {
        "providers": {"gem": {"type": "gemini", "api_key": "k", "base_url": "http://up/v1beta"}}
    }
    async with AsyncRouter(config, transports={"gem": wire.transport}) as router:
        with pytest.raises(RequestError, match=r"'\.\.'"):
            await router.chat.completions.create(model="gem/../../admin/secret", messages=HI)
        with pytest.raises(RequestError, match="contains"):
            await router.chat.completions.create(model="gem/x?key=1", messages=HI)
    assert wire.requests == []


@pytest.mark.parametrize(
    "adapter",
    [
        GeminiAdapter("g", GeminiProviderConfig(type="gemini", api_key="k")),
        AzureAdapter(
            "az",
            AzureProviderConfig(
                type="azure",
                api_key="k",
                endpoint="https://x.openai.azure.com",
                api_version="2024-10-21",
            ),
        ),
    ],
)
def test_adapters_refuse_dot_segments_themselves(adapter: Any) -> None:
    # a configured target (not only a direct address) never reaches another path
    request = validate_chat_request({"model": "m", "messages": HI})
    with pytest.raises(RequestError, match="URL path"):
        adapter.chat_request(request, "../../admin", stream=False)


def test_bedrock_refuses_dot_segments() -> None:
    adapter = BedrockAdapter("b", BedrockProviderConfig(type="bedrock", region="us-east-1"))
    request = validate_chat_request({"model": "m", "messages": HI})
    with pytest.raises(RequestError, match="URL path"):
        adapter.chat_request(request, "..", stream=False)


async def test_the_gateway_refuses_a_traversal_name_and_sends_nothing() -> None:
    from _gateway import running_gateway

    wire = Wire(text="never")
    config: dict[str, Any] = {
        "providers": {"gem": {"type": "gemini", "api_key": "k", "base_url": "http://up/v1beta"}}
    }
    router = AsyncRouter(config, transports={"gem": wire.transport})
    async with running_gateway(config, router=router) as gateway, gateway.http() as http:
        answer = await http.post(
            f"{gateway.root}/v1/chat/completions",
            json={"model": "gem/../../admin/secret", "messages": HI},
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "model"
    assert wire.requests == []
