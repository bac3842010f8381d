"""Write a large synthetic request log, to measure the dashboard's queries on it.

    python benchmarks/make_store.py /tmp/big.db [--requests 1000000 --days 30 --seed 7]
    python benchmarks/make_store.py /tmp/big.db --measure   # then time the dashboard API

The records go through `SqliteStore.write` (the path a router's records take),
in batches of 5,000, spread evenly over the last ``--days`` days: four
providers and models, a few routes, 200 users, 20 keys, 5 teams, a
``feature`` property, 3% errors (some of them rate-limit and budget refusals),
a fallback attempt after each failed first attempt, 20% cache hits, 40%
streams with a time to first token. ``--measure`` times the dashboard API's
views over the store afterwards (the median of 5 runs each, in ms).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from llmroute._types import TokenUsage
from llmroute.dashboard.api import DashboardSource, answer
from llmroute.observe import AttemptRecord, RequestRecord, SqliteStore

PROVIDERS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku"),
             ("groq", "llama-3.1-8b"), ("mistral", "mistral-small")]  # fmt: skip
ROUTES = ["chat", "search", "summarise"]
FEATURES = ["inbox", "reports", "assistant", "export"]
ERRORS = ["ProviderTimeout", "ServerError", "RateLimited", "BudgetExceeded"]


def record(rng: random.Random, i: int, started: float) -> RequestRecord:
    provider, model = rng.choice(PROVIDERS)
    failed = rng.random() < 0.03
    error_type = rng.choice(ERRORS) if failed else None
    refused = error_type in ("RateLimited", "BudgetExceeded") and rng.random() < 0.5
    hit = not failed and rng.random() < 0.2
    stream = rng.random() < 0.4
    latency = rng.lognormvariate(-0.5, 0.6)
    tin, tout = rng.randint(50, 2000), rng.randint(10, 800)
    cost = 0.0 if hit else (tin * 0.15 + tout * 0.6) / 1e6
    attempts = []
    if not refused and not hit:
        target = f"{provider}/{model}"
        if failed or rng.random() < 0.02:
            attempts.append(AttemptRecord(target, provider, model, "first", "error", 503,
                                          "ServerError", "upstream 503", 0.0, latency / 3))  # fmt: skip
            other, other_model = PROVIDERS[(PROVIDERS.index((provider, model)) + 1) % 4]
            if not failed:
                provider, model = other, other_model
            attempts.append(AttemptRecord(f"{other}/{other_model}", other, other_model,
                                          "fallback", "error" if failed else "ok",
                                          503 if failed else 200,
                                          error_type if failed else None, None,
                                          latency / 3, latency / 2))  # fmt: skip
        else:
            attempts.append(AttemptRecord(target, provider, model, "first", "ok", 200,
                                          None, None, 0.0, latency))  # fmt: skip
    return RequestRecord(
        request_id=f"lr-bench-{i:08d}", operation="chat", started_at=started,
        request_model=rng.choice(ROUTES), ended_at=started + latency,
        route=rng.choice(ROUTES), target=None if refused else f"{provider}/{model}",
        provider=None if refused else provider, model=None if refused else model,
        stream=stream, status="error" if failed else "ok", latency_s=latency,
        ttft_s=latency / 4 if stream else None,
        usage=None if failed else TokenUsage(tin, tout, tin // 10, 0, 0, False),
        cost_usd=None if failed else cost, saved_usd=(tin * 0.15 + tout * 0.6) / 1e6 if hit else None,
        cache="hit" if hit else "miss", answered_by="cache" if hit else None,
        limit=error_type if refused else None, error_type=error_type,
        error="refused" if refused else ("upstream failed" if failed else None),
        user=f"user-{rng.randrange(200)}", key=f"key-{rng.randrange(20)}",
        team=f"team-{rng.randrange(5)}", properties={"feature": rng.choice(FEATURES)},
        attempts=attempts,
    )  # fmt: skip


def write(path: Path, requests: int, days: float, seed: int) -> None:
    rng = random.Random(seed)
    store = SqliteStore(path)
    end = time.time()
    start = end - days * 86400
    step = (end - start) / requests
    began = time.perf_counter()
    batch: list[RequestRecord] = []
    for i in range(requests):
        batch.append(record(rng, i, start + i * step))
        if len(batch) == 5000:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    store.close()
    print(f"wrote {requests:,} requests to {path} in {time.perf_counter() - began:.0f}s")


def measure(path: Path) -> None:
    source = DashboardSource(SqliteStore(path))
    views = {
        "overview 24h": ("overview", {"since": "24h"}),
        "overview 7d": ("overview", {"since": "7d"}),
        "overview 30d": ("overview", {"since": "30d"}),
        "overview 7d provider=openai": ("overview", {"since": "7d", "provider": "openai"}),
        "latency 24h": ("latency", {"since": "24h"}),
        "errors 24h": ("errors", {"since": "24h"}),
        "cost 24h by user": ("cost", {"since": "24h", "by": "user"}),
        "cache 24h": ("cache", {"since": "24h"}),
        "requests page": ("requests", {"since": "7d", "limit": "50"}),
    }
    for name, (view, params) in views.items():
        times = []
        for _ in range(5):
            began = time.perf_counter()
            status, _body = answer(source, view, params)
            times.append((time.perf_counter() - began) * 1000)
            if status != 200:
                sys.exit(f"{name}: HTTP {status}")
        print(f"{name:32} {statistics.median(times):8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--measure", action="store_true", help="only time the API's views")
    args = parser.parse_args()
    if not args.measure:
        write(args.path, args.requests, args.days, args.seed)
    measure(args.path)


if __name__ == "__main__":
    main()
