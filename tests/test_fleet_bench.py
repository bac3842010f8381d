"""A fleet of three ``llmroute serve`` processes on one real Redis and one real PostgreSQL
(issue 19, item 4): the fleet benchmark's machinery (benchmarks/bench_fleet.py) in a small run.

Three gateways (the CLI, real subprocesses) serve one config: rate limits and provider state
on the Redis, the request log on the PostgreSQL; a separate process loads them round-robin.
Checked: a request limit holds exactly across the fleet; a 429 with ``Retry-After`` met by
one gateway keeps every gateway off that target until it ends (no upstream hit after the
first) and no longer; after SIGTERM (each gateway drains and flushes) every answered
request is a row of the shared log, and none was dropped on the way.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from bench_fleet import Settings, measure
from fleet import BACKUP_MODEL, PRIMARY_MODEL

PROCESSES = 3


def test_a_fleet_of_three_gateways_shares_limits_cooldowns_and_one_log(
    redis_url: str, postgres_url: str
) -> None:
    settings = Settings(processes=PROCESSES, requests=900, rounds=1, concurrency=24, limit=40,
                        retry_after=2, live=False)  # fmt: skip
    out = measure(redis_url, postgres_url, settings)
    figures = out.figures
    # the limit: exactly `limit` of twice as many requests, spread over three processes, the
    # first requests the fresh gateways got (before the fix below: 137 and 199 of 100)
    assert figures["let_through"] == settings.limit
    assert figures["refused"] == settings.limit
    assert figures["limit_upstream"] == settings.limit
    # Retry-After: every gateway knew of it (its /api/health) within a second, through Redis
    assert all(k is not None and k[0] < 1.0 for k in figures["learned"]), figures["learned"]
    # the primary met once (the 429), then nothing from any gateway until the cooldown ended
    assert figures["cooldown_hits"] == 0
    assert figures["during"] > PROCESSES and figures["backup"] == figures["during"]
    assert figures["after"] == {PRIMARY_MODEL: PROCESSES}
    assert BACKUP_MODEL not in figures["after"]
    # the shared log: each gateway exited 0 after SIGTERM, and every answer is a row
    assert figures["exit_codes"] == [0] * PROCESSES
    assert figures["missing"] == 0
    assert figures["stored"] == figures["answered"] > settings.requests * 2
    assert figures["dropped"] == 0
    # the throughput round ran on both shapes and the log absorbed it
    assert figures["single"] > 0 and figures["fleet"] > 0 and figures["absorbed"] > 0
    assert all(out.checks.values()), out.checks


def test_a_gateway_loads_what_first_requests_would_before_it_is_ready() -> None:
    """The fix for a limit over-admitted by fresh gateways: the router imported aiohttp (and
    built its TLS context) on its first upstream request, 0.2-0.4 s of blocked event loop on
    this machine, and its log's worker loaded genai-prices' data holding the GIL; a burst arriving as soon as ``/ready`` said 200 had its Redis calls time out
    meanwhile (250 ms), and the rate limits failed open (65 of 40 in CI with aiohttp alone
    imported first). The app's startup warms the router up (`AsyncRouter.warm_up`) before
    it reports ready. A fresh interpreter, so nothing loaded them before."""
    code = textwrap.dedent("""
        import sys
        from llmroute import AsyncRouter
        from llmroute.server import create_app

        config = {"providers": {"m": {"type": "mock"}}, "routes": {"r": {"targets": ["m/x"]}},
                  "logging": {"store": "postgresql://nobody@127.0.0.1:1/none"}}
        app = create_app(AsyncRouter(config))
        wanted = ("aiohttp", "genai_prices.data_snapshot")
        before = [name in sys.modules for name in wanted]
        app.startup()
        print(*before, *(name in sys.modules for name in wanted))
    """)
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, check=True)  # fmt: skip
    assert found.stdout.split() == ["False"] * 2 + ["True"] * 2
