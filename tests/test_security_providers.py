"""Only configured providers are reachable through `llmroute serve` (issue 15, finding 4).

Before, any client could name ``vllm/...``, ``ollama/...`` or ``lmstudio/...`` and make
the gateway post its JSON to localhost:8000, :11434 or :1234 (an SSRF into the
operator's machine, and a port scanner through the error messages), or ``mock/...``
for free answers. Those are implicit providers: on in process, off in the gateway
unless ``server.implicit_providers`` is set.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from llmroute import AsyncRouter, UnknownModel
from test_server_cli import serving

HI = [{"role": "user", "content": "hi"}]
CONFIG = {
    "providers": {"a": {"type": "mock", "text": "configured"}},
    "routes": {"chat": {"targets": ["a/m"]}},
}


def post(root: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": HI}
    return httpx.post(f"{root}/v1/chat/completions", json=body, timeout=10)


def test_the_gateway_reaches_only_configured_providers(tmp_path: Path) -> None:
    (tmp_path / "llmroute.yaml").write_text(yaml.safe_dump(CONFIG))
    with serving(tmp_path) as (root, process):
        answers = {m: post(root, m) for m in ["mock/x", "vllm/x", "ollama/x", "lmstudio/x"]}
        configured = post(root, "a/m")
        routed = post(root, "chat")
    process.communicate()
    for model, answer in answers.items():
        assert answer.status_code == 404, model
        error = answer.json()["error"]
        assert error["code"] == "model_not_found"
        assert "is not configured here" in error["message"]
        assert "localhost" not in error["message"] and "127.0.0.1" not in error["message"]
    assert configured.status_code == 200
    assert routed.json()["choices"][0]["message"]["content"] == "configured"


def test_implicit_providers_are_an_operator_opt_in(tmp_path: Path) -> None:
    config = {**CONFIG, "server": {"implicit_providers": True}}
    (tmp_path / "llmroute.yaml").write_text(yaml.safe_dump(config))
    with serving(tmp_path) as (root, process):
        answer = post(root, "mock/x")
    process.communicate()
    assert answer.status_code == 200


@pytest.mark.anyio
async def test_in_process_routers_keep_implicit_providers_unless_told() -> None:
    async with AsyncRouter({}, env={}) as router:
        reply = await router.chat.completions.create(model="mock/x", messages=HI)
        assert reply.llmroute.provider == "mock"
    async with AsyncRouter({}, env={"OPENAI_API_KEY": "sk"}, implicit_providers=False) as router:
        with pytest.raises(UnknownModel, match="'openai' is not configured"):
            await router.chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
        with pytest.raises(UnknownModel, match="'mock' is not configured"):
            await router.chat.completions.create(model="mock/x", messages=HI)
