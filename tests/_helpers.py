"""Helpers several test modules share: a one-line conversation, asking route ``chat``,
counting what reached a provider, genai-prices' own cost (the pricing oracles'), JSON
without its nulls, and the results of worker processes.

Per-module helpers that differ in what they need (each module's ``build``, with its own
clock, prices or transports) stay in their modules.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from typing import Any

import llmroute
from llmroute import AsyncRouter

#: The smallest conversation: one user message.
HI = [{"role": "user", "content": "Hi"}]


def without_nulls(value: Any) -> Any:
    """`value` (parsed JSON) with every null member of an object left out: what a provider
    may send or omit, and a typed model writes as null or leaves out."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


async def ask(router: AsyncRouter, **extra: Any) -> llmroute.ChatCompletion:
    """Ask route ``chat`` (``messages`` defaults to `HI`; `extra` goes to ``create``)."""
    extra.setdefault("messages", HI)
    return await router.chat.completions.create(model="chat", **extra)


def sent(router: AsyncRouter, provider: str = "a", model: str = "m") -> int:
    """Requests that reached ``provider/model`` (one per attempt), from the public statistics."""
    return router.stats()[f"{provider}/{model}"].requests


def genai_cost(
    provider_id: str,
    model: str,
    usage: llmroute.TokenUsage,
    at: float | None = None,
    tier: str | None = None,
) -> float:
    """genai-prices' own cost of `usage` on `model` (at Unix time `at`, now by default; at
    service tier `tier`), by its public ``calc_price``: what `PriceBook`'s fast paths are
    held to."""
    from genai_prices import Usage, calc_price

    priced = Usage(
        input_tokens=usage.input,
        cache_read_tokens=usage.cache_read or None,
        cache_write_tokens=usage.cache_write or None,
        output_tokens=usage.output,
        output_reasoning_tokens=usage.reasoning or None,
    )
    result = calc_price(
        priced,
        model,
        provider_id=provider_id,
        genai_request_timestamp=None if at is None else datetime.fromtimestamp(at, tz=UTC),
        price_context={"service_tier": tier} if tier else None,
    )
    return float(result.total_price)


def worker_results(
    processes: list[subprocess.Popen[str]], timeout: float = 60
) -> list[dict[str, Any]]:
    """Each worker's result, the JSON of its last line of output, once it has exited 0.
    A failure or a timeout kills the workers still running: none is left behind."""
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        end_workers(processes)
    return results


def end_workers(processes: list[subprocess.Popen[str]]) -> None:
    """Kill the workers still running (after a failure or a timeout)."""
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()
