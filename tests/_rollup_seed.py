"""A request log for the rollups' oracles: records over a few days, many on or a hair
either side of a minute, hour or day boundary, written in batches of every size."""

from __future__ import annotations

import contextlib
import random
import sqlite3
from pathlib import Path

from llmroute._types import TokenUsage
from llmroute.observe import PostgresStore, RequestRecord, SqliteStore, open_store
from llmroute.observe.histogram import TABLES, TOTAL_TABLES
from llmroute.observe.rollup import GRAINS, TOTAL_GRAINS

#: A Monday, midnight UTC: day, hour and minute boundaries fall on round offsets from it.
T0 = 1_700_438_400.0
DAYS = 3


def seeded_records(seed: int = 3, count: int = 3000) -> list[RequestRecord]:
    """Requests over `DAYS` days from `T0`, some exactly on a minute, hour or day boundary
    or a hair either side; costs are multiples of 2**-20, so sums are exact in any order.
    Latencies spread over four orders of magnitude (some 0, some unknown), with a time to
    first token for streams."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 10 == 0:
            edge = rng.choice([60, 3600, 86400]) * rng.randrange(1, DAYS * 86400 // 3600)
            started = T0 + min(edge, DAYS * 86400 - 1) + rng.choice([0.0, -1e-6, 1e-6, 0.5])
        else:
            started = T0 + rng.uniform(0, DAYS * 86400)
        provider, model = rng.choice([("alpha", "a-1"), ("beta", "b-2"), ("gamma", "g-3")])
        failed = rng.random() < 0.1
        refused = failed and rng.random() < 0.3
        hit = not failed and rng.random() < 0.25
        tin, tout = rng.randrange(1, 3000), rng.randrange(1, 900)
        stream = rng.random() < 0.4
        if refused and rng.random() < 0.5:
            latency = None  # refused before it was timed
        elif hit and rng.random() < 0.1:
            latency = 0.0  # answered from the cache within a clock tick
        else:
            latency = rng.lognormvariate(-0.5, 1.2)
        out.append(
            RequestRecord(
                request_id=f"lr-roll-{i:05d}",
                operation=rng.choice(["chat", "chat", "embeddings"]),
                started_at=started,
                request_model="m",
                route=rng.choice(["chat", "search", None]),
                target=None if refused else f"{provider}/{model}",
                provider=None if refused else provider,
                model=None if refused else model,
                status="error" if failed else "ok",
                stream=stream,
                latency_s=latency,
                ttft_s=latency * rng.uniform(0.05, 0.9) if stream and latency else None,
                usage=None if failed else TokenUsage(tin, tout, tin // 4, tin // 9, tout // 5),
                cost_usd=None if failed or rng.random() < 0.05 else rng.randrange(1, 4000) / 2**20,
                saved_usd=rng.randrange(1, 900) / 2**20 if hit else None,
                cache=None if rng.random() < 0.1 else ("hit" if hit else "miss"),
                limit="rate" if refused else None,
                error_type=rng.choice(["ServerError", "RateLimited"]) if failed else None,
                user=f"user-{rng.randrange(4)}",
                key="app",
                team=rng.choice(["ads", "search"]),
                properties={"feature": rng.choice(["inbox", "reports"])},
            )
        )
    return out


def seeded_store(store_at: Path | str) -> SqliteStore | PostgresStore:
    """A store of `seeded_records` (a SQLite file's path, or any store's URL), written in
    batches of 1 to 400 records, some records written twice (a store skips an id it has)."""
    made = open_store(str(store_at))
    records = seeded_records()
    rng = random.Random(5)
    i = 0
    while i < len(records):
        size = rng.randrange(1, 400)
        made.write(records[i : i + size] + records[max(0, i - 3) : i])
        i += size
    made.close()
    return made


def set_back(path: Path, version: int) -> None:
    """Undo the schema steps of the store at `path` after `version` (7: the rollups, 8: their
    histograms, 9: the properties' start) and set its version back: opening it migrates it
    again, filling what the steps add from the stored rows."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        if version < 9:
            conn.execute("DROP INDEX properties_time")
            conn.execute("ALTER TABLE properties DROP COLUMN started_at")
        for step, tables in ((8, TABLES + TOTAL_TABLES), (7, GRAINS + TOTAL_GRAINS)):
            if version < step:
                for table, _ in tables:
                    conn.execute(f"DROP TABLE {table}")
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def set_back_postgres(url: str, version: int) -> None:
    """`set_back` for the PostgreSQL store at `url` (whose first version is 7)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        if version < 9:
            conn.execute("DROP INDEX properties_time")
            conn.execute("ALTER TABLE properties DROP COLUMN started_at")
        if version < 8:
            for table, _ in TABLES + TOTAL_TABLES:
                conn.execute(f"DROP TABLE {table}")  # type: ignore[arg-type]
        conn.execute("UPDATE llmroute_schema SET version = %s", (version,))
