"""A request log with known contents, for the dashboard's API and browser tests.

`seed` writes `records` (made relative to `now`) through the store's `write`,
the path a router's records take; the tests compute what the dashboard must
show from the same list.
"""

from __future__ import annotations

import time
from pathlib import Path

from llmroute._types import TokenUsage
from llmroute.observe import AttemptRecord, RequestRecord, open_store
from llmroute.observe.feedback import Feedback

#: The id of the one request that failed over (two attempts).
FAILOVER_ID = "lr-seed-failover"
#: The experiment the 36 regular requests are in: even ones control, odd ones ``friendly``,
#: assigned by six sticky keys; a thumbs-up or down on every third.
EXPERIMENT = "tone"


def thumbs_up(i: int) -> bool | None:
    """The feedback given on regular request `i` (None: none)."""
    return None if i % 3 else i % 2 == 1 or i % 4 == 0


def records(now: float) -> list[RequestRecord]:
    """40 requests over the last 3 hours: two providers, three users, a ``feature`` property,
    cache hits, a refusal by a budget, a failover, an upstream error, an old request (8 days
    ago, outside the default range); 36 of them in `EXPERIMENT`."""
    out = []
    for i in range(36):
        provider, model = ("alpha", "a-1") if i % 3 else ("beta", "b-2")
        hit = i % 9 == 0
        tin, tout = 100 + 10 * i, 20 + i
        out.append(
            RequestRecord(
                request_id=f"lr-seed-{i:03d}",
                operation="chat",
                started_at=now - 60 - i * 290,
                request_model="chat",
                ended_at=now - 59 - i * 290,
                route="chat",
                target=f"{provider}/{model}",
                provider=provider,
                model=model,
                stream=i % 2 == 0,
                status="ok",
                latency_s=0.1 + 0.01 * i,
                ttft_s=0.05 + 0.002 * i if i % 2 == 0 else None,
                usage=TokenUsage(tin, tout, 0, 0, 0, False),
                cost_usd=0.0 if hit else (tin + 2 * tout) / 1e5,
                saved_usd=(tin + 2 * tout) / 1e5 if hit else None,
                cache="hit" if hit else "miss",
                answered_by="cache" if hit else None,
                user=f"user-{i % 3}",
                key="app",
                team="search" if i % 4 else "ads",
                properties={"feature": "inbox" if i % 2 else "reports"},
                experiment=EXPERIMENT,
                variant="friendly" if i % 2 else "control",
                assignment="sticky",
                sticky_key=f"sticky-{i % 6}",
                attempts=[]
                if hit
                else [
                    AttemptRecord(
                        f"{provider}/{model}", provider, model, "first", "ok", 200, latency_s=0.1
                    )
                ],
            )
        )
    out.append(
        RequestRecord(
            request_id=FAILOVER_ID,
            operation="chat",
            started_at=now - 100,
            request_model="chat",
            route="chat",
            target="beta/b-2",
            provider="beta",
            model="b-2",
            status="ok",
            latency_s=1.5,
            usage=TokenUsage(50, 5, 0, 0, 0, False),
            cost_usd=0.002,
            cache="miss",
            user="user-1",
            key="app",
            team="search",
            attempts=[
                AttemptRecord(
                    "alpha/a-1",
                    "alpha",
                    "a-1",
                    "first",
                    "error",
                    503,
                    "ServerError",
                    "upstream said 503",
                    0.0,
                    0.4,
                ),
                AttemptRecord(
                    "beta/b-2", "beta", "b-2", "fallback", "ok", 200, None, None, 0.45, 1.0
                ),
            ],
        )
    )
    out.append(
        RequestRecord(
            request_id="lr-seed-refused",
            operation="chat",
            started_at=now - 200,
            request_model="chat",
            route="chat",
            status="error",
            latency_s=0.001,
            limit="BudgetExceeded",
            error_type="BudgetExceeded",
            error="over budget",
            user="user-2",
            key="app",
            team="ads",
        )
    )
    out.append(
        RequestRecord(
            request_id="lr-seed-failed",
            operation="chat",
            started_at=now - 300,
            request_model="chat",
            route="chat",
            target="alpha/a-1",
            provider="alpha",
            model="a-1",
            status="error",
            latency_s=2.0,
            error_type="ProviderTimeout",
            error="timed out",
            user="user-0",
            key="app",
            team="search",
            attempts=[
                AttemptRecord(
                    "alpha/a-1",
                    "alpha",
                    "a-1",
                    "first",
                    "error",
                    None,
                    "ProviderTimeout",
                    "timed out",
                    0.0,
                    2.0,
                )
            ],
        )
    )
    out.append(
        RequestRecord(
            request_id="lr-seed-old",
            operation="chat",
            started_at=now - 8 * 86400,
            request_model="chat",
            route="chat",
            target="alpha/a-1",
            provider="alpha",
            model="a-1",
            status="ok",
            latency_s=0.3,
            usage=TokenUsage(10, 1, 0, 0, 0, False),
            cost_usd=0.5,
            cache="miss",
            user="user-9",
            key="app",
            team="search",
        )
    )
    return out


def seed(store_at: Path | str, now: float | None = None) -> list[RequestRecord]:
    """Write the seeded records to the store at `store_at` (a SQLite file's path, or any
    store's URL); return them."""
    written = records(time.time() if now is None else now)
    store = open_store(str(store_at))
    store.write(written)
    for i in range(36):
        value = thumbs_up(i)
        if value is not None:
            given = Feedback(f"fb-seed-{i}", "thumbs_up", float(value), "boolean",
                             written[i].started_at + 5, request_id=written[i].request_id)  # fmt: skip
            assert store.add_feedback(given)
    store.close()
    return written
