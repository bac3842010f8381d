"""PostgreSQL absorption: records per second the PostgreSQL store's writer stores, one process.

    python benchmarks/bench_postgres.py [--records 50000 --batch 500 --rounds 3]
    python benchmarks/bench_postgres.py --url postgresql://user:pass@host/db

Without ``--url`` it starts a throwaway server (Debian's binaries, initialised into a
temp folder by ``tests/_postgres.py``) with PostgreSQL's durable defaults (fsync on,
synchronous commit). Each round writes ``--records`` realistic records (two attempts,
two properties each) in batches of ``--batch``, as the recorder's worker thread does,
to a fresh PostgreSQL database and, in the same run, to a fresh SQLite file (the
reference); it prints records per second for each and their ratio, the median of the
rounds (the machine is shared: compare the ratio, not the absolute figures). Every
record is then counted back from the store and the rollups.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from llmroute._types import TokenUsage
from llmroute.observe import AttemptRecord, PostgresStore, RequestRecord, SqliteStore


def records(count: int, seed: int) -> list[RequestRecord]:
    rng = random.Random(seed)
    start = time.time() - 3600
    out = []
    for i in range(count):
        provider = rng.choice(["alpha", "beta", "gamma"])
        out.append(
            RequestRecord(
                request_id=f"lr-{seed}-{i:08d}", operation="chat",
                started_at=start + i * 3600 / count, ended_at=start + i * 3600 / count + 0.4,
                request_model="chat", route="chat", strategy="latency",
                target=f"{provider}/m-1", provider=provider, model="m-1", status="ok",
                latency_s=rng.uniform(0.1, 2), ttft_s=rng.uniform(0.05, 0.5), stream=True,
                usage=TokenUsage(rng.randrange(10, 3000), rng.randrange(1, 800)),
                cost_usd=rng.randrange(1, 4000) / 2**20, cache="miss",
                user=f"user-{rng.randrange(50)}", key="app", team="search",
                properties={"feature": rng.choice(["inbox", "reports"]), "env": "prod"},
                attempts=[
                    AttemptRecord("beta/m-1", "beta", "m-1", "first", "error", 503,
                                  "ProviderUnavailable", "busy", 0.0, 0.05),
                    AttemptRecord(f"{provider}/m-1", provider, "m-1", "failover",
                                  latency_s=0.35, started_s=0.05),
                ],
            )
        )  # fmt: skip
    return out


def absorb(store: PostgresStore | SqliteStore, batch: list[RequestRecord], size: int) -> float:
    """Records per second `store.write` takes `batch` at, in slices of `size`."""
    store.write(batch[:1])  # open the connection, create or migrate the schema
    began = time.perf_counter()
    for i in range(1, len(batch), size):
        store.write(batch[i : i + size])
    elapsed = time.perf_counter() - began
    store.close()
    return (len(batch) - 1) / elapsed


def check(store: PostgresStore | SqliteStore, expected: int) -> None:
    with store.connect() as conn:
        stored = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        rolled = conn.execute("SELECT SUM(requests) FROM rollup_total_minute").fetchone()[0]
        tried = conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    if (stored, int(rolled), tried) != (expected, expected, 2 * expected):
        raise SystemExit(f"lost records: {stored} stored, {rolled} rolled up, of {expected}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL database to use (its tables are added to)")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = None
    if args.url is None:
        from _postgres import PostgresServer, find_bindir

        bindir = find_bindir()
        if bindir is None:
            raise SystemExit("no PostgreSQL binaries: pass --url or apt-get install postgresql")
        server = PostgresServer(bindir, durable=True)
        server.start()
    try:
        pg_rates, lite_rates = [], []
        for n in range(args.rounds):
            batch = records(args.records + 1, seed=n)
            url = args.url if server is None else server.create_database()
            pg = PostgresStore(url)
            pg_rates.append(absorb(pg, batch, args.batch))
            if server is not None:
                check(pg, len(batch))
            with tempfile.TemporaryDirectory() as folder:
                lite = SqliteStore(Path(folder) / "log.db")
                lite_rates.append(absorb(lite, batch, args.batch))
                check(lite, len(batch))
            print(f"round {n + 1}: PostgreSQL {pg_rates[-1]:,.0f} records/s, "
                  f"SQLite {lite_rates[-1]:,.0f} records/s")  # fmt: skip
        pg_rate, lite_rate = statistics.median(pg_rates), statistics.median(lite_rates)
        print(f"median of {args.rounds}, {args.records:,} records in batches of {args.batch}: "
              f"PostgreSQL {pg_rate:,.0f} records/s, SQLite {lite_rate:,.0f} records/s, "
              f"ratio {pg_rate / lite_rate:.2f}")  # fmt: skip
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
