"""Time the dashboard's API views on a large store, and what keeping its rollups costs a write.

    python benchmarks/make_store.py /tmp/big.db          # once: 1,000,000 requests
    python benchmarks/bench_dashboard.py /tmp/big.db     # each view, median of 5, PASS/FAIL
    python benchmarks/bench_dashboard.py --write-cost    # µs per record stored, batches of 500

The views run in process through `llmroute.dashboard.api.answer` (what the
page's requests run, without HTTP), their ranges ending a second after the
store's newest request. The overview and the latency view (from the rollups'
histograms) must answer in under `TARGET_MS` for every range of the page's
range picker, without filters and with a provider filter; the exact latency
view (``exact=1``, the raw rows) is timed in the same run for the ratio; the
other views are reported without a target.
``--write-cost`` writes ``--records`` synthetic records (those of
``make_store.py``, ``--rate`` a second) into a new store in batches of ``--batch`` and prints the
CPU time per record (median of ``--rounds``), to compare a branch with and
without rollups (run it with each one's ``src`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llmroute.dashboard.api import DashboardSource, answer
from llmroute.observe import SqliteStore
from make_store import record

#: The overview's aim, in milliseconds.
TARGET_MS = 300.0
#: The range picker's ranges (the page's ``<select id="range">``).
RANGES = ("1h", "6h", "24h", "7d", "30d")


def views() -> dict[str, tuple[str, dict[str, str], bool]]:
    """Name: (view, parameters, held to `TARGET_MS`)."""
    timed: dict[str, tuple[str, dict[str, str], bool]] = {}
    for since in RANGES:
        timed[f"overview {since}"] = ("overview", {"since": since}, True)
    for since in ("24h", "30d"):
        timed[f"overview {since} provider=openai"] = (
            "overview", {"since": since, "provider": "openai"}, True,
        )  # fmt: skip
    timed["overview 24h user=user-7 (raw rows)"] = (
        "overview", {"since": "24h", "user": "user-7"}, False,
    )  # fmt: skip
    timed["overview 7d property.feature (raw)"] = (
        "overview", {"since": "7d", "property.feature": "inbox"}, False,
    )  # fmt: skip
    for since in ("24h", "7d", "30d"):
        timed[f"latency {since}"] = ("latency", {"since": since}, True)
        timed[f"latency {since} exact (raw rows)"] = (
            "latency", {"since": since, "exact": "1"}, False,
        )  # fmt: skip
    timed["latency 7d provider=openai"] = ("latency", {"since": "7d", "provider": "openai"}, True)
    timed["errors 24h"] = ("errors", {"since": "24h"}, False)
    timed["cost 24h by model"] = ("cost", {"since": "24h"}, False)
    timed["cost 30d by model"] = ("cost", {"since": "30d"}, False)
    timed["cost 24h by user"] = ("cost", {"since": "24h", "by": "user"}, False)
    timed["cache 24h"] = ("cache", {"since": "24h"}, False)
    timed["requests page 7d"] = ("requests", {"since": "7d", "limit": "50"}, False)
    return timed


def measure(path: Path, runs: int) -> bool:
    store = SqliteStore(path)
    with store.connect() as conn:  # ranges end at the newest request, however old the store
        now = conn.execute("SELECT MAX(started_at) FROM requests").fetchone()[0] + 1
    source = DashboardSource(store)
    ok = True
    for name, (view, params, held) in views().items():
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            status, _body = answer(source, view, params, now=now)
            times.append((time.perf_counter() - began) * 1000)
            if status != 200:
                sys.exit(f"{name}: HTTP {status}: {_body[:200]!r}")
        median = statistics.median(times)
        verdict = ""
        if held:
            verdict = "PASS" if median < TARGET_MS else "FAIL"
            ok = ok and median < TARGET_MS
        print(f"{name:40} {median:8.1f} ms  {verdict}", flush=True)
    return ok


def write_cost(records: int, batch: int, rounds: int, rate: float) -> None:
    rng = random.Random(7)
    start = time.time() - records / rate
    made = [record(rng, i, start + i / rate) for i in range(records)]
    per_record = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            store = SqliteStore(Path(folder) / "bench.db")
            store.write(made[:1])  # create and migrate outside the timing
            began = time.process_time()  # CPU time: less at the mercy of a busy machine
            for i in range(1, records, batch):
                store.write(made[i : i + batch])
            per_record.append((time.process_time() - began) / (records - 1) * 1e6)
            store.close()
    print(f"write: {statistics.median(per_record):.1f} µs of CPU per record "
          f"(batches of {batch}, {records:,} records at {rate:g}/s, median of {rounds})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, nargs="?")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write-cost", action="store_true")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=500.0, help="requests a second")
    args = parser.parse_args()
    if args.write_cost:
        write_cost(args.records, args.batch, args.rounds, args.rate)
        return
    if args.path is None:
        parser.error("give the store's path (or --write-cost)")
    if not measure(args.path, args.runs):
        sys.exit(f"FAIL: a view held to {TARGET_MS:g} ms took longer")


if __name__ == "__main__":
    main()
