"""Selection cost: microseconds to filter and order a route of 10 targets, per strategy.

    python benchmarks/bench_select.py [--targets 10] [--n 50000]

Target (smart-selection issue): under 5 µs per request for 10 targets. Each
strategy runs with warm statistics (every target has latency samples), so the
latency strategy does its full work; the cost strategy prices every target
(the genai-prices lookups are cached after the first request, as in a router).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from llmroute import AsyncRouter
from llmroute._request import RequestOptions, validate_chat_request
from llmroute.routing.select import RequestFacts

STRATEGIES = ("ordered", "weighted", "round_robin", "least_busy", "latency", "cost")


def build(strategy: str, count: int) -> AsyncRouter:
    targets = [
        {"provider": "p", "model": f"m{i}", "weight": i + 1,
         "price": {"input": 0.1 * (i + 1), "output": 0.4 * (i + 1)}}
        for i in range(count)
    ]  # fmt: skip
    config = {
        "providers": {"p": {"type": "mock"}},
        "routes": {"chat": {"strategy": strategy, "targets": targets}},
        "logging": {"store": None},
        "telemetry": {"enabled": False},
    }
    return AsyncRouter(config, env={}, seed=1)


def measure(strategy: str, count: int, n: int) -> float:
    router = build(strategy, count)
    route = router._catalog.routes["chat"]
    driver = router.chat.completions._executor.driver
    for i, target in enumerate(route.targets):  # warm statistics for every target
        driver.stats.answered(target.key, 0.1 + 0.01 * i, 100, 0.0)
    request = validate_chat_request(
        {"model": "chat", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 100}
    )
    facts = RequestFacts(request, RequestOptions(), False)
    select = driver.selector.select
    rounds = []
    for _ in range(5):
        # CPU time of this process: waiting for a core on a shared machine does not count
        started = time.process_time()
        for _ in range(n):
            select(route, facts, 1.0)
        rounds.append((time.process_time() - started) / n * 1e6)
    return statistics.median(rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args(argv)
    ok = True
    print(f"selection cost, {args.targets} targets (CPU time, median of 5 rounds of {args.n}):")
    for strategy in STRATEGIES:
        cost = measure(strategy, args.targets, args.n)
        passed = cost < 5.0
        ok &= passed
        print(f"  {'PASS' if passed else 'FAIL'}  {strategy:<12} {cost:6.2f} µs  (target < 5 µs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
