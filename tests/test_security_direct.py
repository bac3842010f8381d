"""Per key, direct ``provider/model`` access can be denied (issue 15, finding 4: `direct`)."""

from __future__ import annotations

import pytest

from _gateway import running_gateway
from llmroute.server.keys import hash_key

pytestmark = pytest.mark.anyio

ROUTES_ONLY, ANY = "routes-only-key-0123456789", "any-model-key-0123456789ab"
CONFIG = {
    "providers": {"a": {"type": "mock", "text": "ok"}},
    "routes": {"chat": {"targets": ["a/m"]}},
}
SERVER = {
    "keys": [
        {"name": "app", "key": hash_key(ROUTES_ONLY), "direct": False},
        {"name": "lab", "key": hash_key(ANY)},
    ]
}
HI = [{"role": "user", "content": "hi"}]


async def test_a_key_may_be_held_to_the_configured_routes() -> None:
    async with running_gateway(CONFIG, server=SERVER) as gateway, gateway.http() as http:

        async def status(key: str, model: str) -> int:
            answer = await http.post(
                f"{gateway.root}/v1/chat/completions",
                json={"model": model, "messages": HI},
                headers={"authorization": f"Bearer {key}"},
            )
            return answer.status_code

        assert await status(ROUTES_ONLY, "chat") == 200
        assert await status(ROUTES_ONLY, "a/m") == 403
        assert await status(ANY, "a/m") == 200
        listed = await http.get(
            f"{gateway.root}/v1/models", headers={"authorization": f"Bearer {ROUTES_ONLY}"}
        )
    assert [m["id"] for m in listed.json()["data"]] == ["chat"]
