"""Helpers several test modules share: a one-line conversation, asking route ``chat``, and
counting what reached a provider.

Per-module helpers that differ in what they need (each module's ``build``, with its own
clock, prices or transports) stay in their modules.
"""

from __future__ import annotations

from typing import Any

import llmroute
from llmroute import AsyncRouter

#: The smallest conversation: one user message.
HI = [{"role": "user", "content": "Hi"}]


async def ask(router: AsyncRouter, **extra: Any) -> llmroute.ChatCompletion:
    """Ask route ``chat`` (``messages`` defaults to `HI`; `extra` goes to ``create``)."""
    extra.setdefault("messages", HI)
    return await router.chat.completions.create(model="chat", **extra)


def sent(router: AsyncRouter, provider: str = "a", model: str = "m") -> int:
    """Requests that reached ``provider/model`` (one per attempt), from the public statistics."""
    return router.stats()[f"{provider}/{model}"].requests
