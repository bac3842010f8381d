"""How long ``import llmroute`` takes, how much memory it costs, and what it pulls in.

    python benchmarks/bench_import.py [--runs 9]

Each run is a fresh ``python`` subprocess that times ``import llmroute`` with
``time.perf_counter`` and then reads its own resident set size
(``VmRSS`` in ``/proc/self/status``) and ``sys.modules``. Reported: the median
over the runs, of

- the import time and the process RSS after the import (the targets: under
  150 ms and under 40 MB), with a bare interpreter's RSS for reference;
- which heavy or optional modules ended up imported. The optional extras
  (uvicorn, prometheus_client, redis, botocore, httpx2, rich) must not be;
  aiohttp and genai_prices are deliberately imported lazily (on the first
  request, and on the first cost lookup).

Bytecode: an installed wheel has compiled ``.pyc`` files, but this checkout
is an editable install run with ``PYTHONDONTWRITEBYTECODE``, so llmroute's own
modules would be compiled from source on every import. The "cached" figures
(the ones checked against the targets) therefore use a private bytecode cache
(``PYTHONPYCACHEPREFIX`` in a temporary directory, primed by one unmeasured
run), which writes nothing into the source tree; the "uncached" figures use
the environment as it is, for reference. One extra run with
``-X importtime`` lists the slowest modules under llmroute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HEAVY = (
    "aiohttp",
    "genai_prices",
    "yaml",
    "uvicorn",
    "prometheus_client",
    "redis",
    "botocore",
    "httpx",
    "httpx2",
    "rich",
    "openai",
    "opentelemetry",
    "tenacity",
    "cachetools",
    "anyio",
    "pydantic",
    "pydantic_core",
    "multidict",
    "ssl",
    "asyncio",
)
#: Must never be imported by ``import llmroute`` (optional extras, lazily loaded deps).
FORBIDDEN = ("uvicorn", "prometheus_client", "redis", "botocore", "httpx2", "rich")
LAZY = ("aiohttp", "genai_prices")

PROBE = """
import json, sys, time

def rss_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

before = rss_kb()
start = time.perf_counter()
import llmroute
elapsed = time.perf_counter() - start
after = rss_kb()
heavy = %r
imported = [m for m in heavy if m in sys.modules]
count = len(sys.modules)
start = time.perf_counter()
llmroute.AsyncRouter  # first use: the router and everything it needs
first_use = time.perf_counter() - start
used = rss_kb()
print(json.dumps({
    "ms": elapsed * 1000,
    "first_use_ms": first_use * 1000,
    "rss_before_kb": before,
    "rss_kb": after,
    "rss_used_kb": used,
    "modules": count,
    "file": llmroute.__file__,
    "imported": imported,
}))
"""


def probe(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def bare_rss_kb(env: dict[str, str]) -> int:
    code = "import re;print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return int(out.stdout)


def summarise(results: list[dict[str, object]]) -> dict[str, object]:
    med = statistics.median
    times = [float(r["ms"]) for r in results]  # type: ignore[arg-type]
    return {
        "first_use_ms": med(float(r["first_use_ms"]) for r in results),  # type: ignore[arg-type]
        "rss_used_mb": med(int(r["rss_used_kb"]) for r in results) / 1024,  # type: ignore[call-overload]
        "ms": med(times),
        "ms_min": min(times),
        "ms_max": max(times),
        "rss_mb": med(int(r["rss_kb"]) for r in results) / 1024,  # type: ignore[call-overload]
        "delta_mb": med(int(r["rss_kb"]) - int(r["rss_before_kb"]) for r in results) / 1024,  # type: ignore[call-overload]
        "modules": med(int(r["modules"]) for r in results),  # type: ignore[call-overload]
        "imported": results[-1]["imported"],
        "file": results[-1]["file"],
    }


def importtime_top(env: dict[str, str], count: int) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, module) of the slowest imports under llmroute, by cumulative time."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import llmroute"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        rows.append((int(own), int(cumulative), name.rstrip()))
    # -X importtime lists children before their parent, indented deeper:
    # llmroute's subtree is the run of deeper lines just before its own line.
    top = next(i for i, row in enumerate(rows) if row[2].strip() == "llmroute")
    depth = len(rows[top][2]) - len(rows[top][2].lstrip())
    first = top
    while first > 0 and len(rows[first - 1][2]) - len(rows[first - 1][2].lstrip()) > depth:
        first -= 1
    subtree = rows[first : top + 1]
    subtree.sort(key=lambda row: row[1], reverse=True)
    return subtree[:count]


def floor_probe(env: dict[str, str], statement: str) -> float:
    """The time (ms) of `statement` in a fresh interpreter: what llmroute cannot go below."""
    code = f"import time\nstart = time.perf_counter()\n{statement}\nprint((time.perf_counter() - start) * 1000)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout)


FLOORS = {
    "pydantic (BaseModel + one model)": (
        "from pydantic import BaseModel\nclass A(BaseModel):\n    x: int"
    ),
    "pydantic + anyio (BaseModel + one model)": (
        "import anyio\nfrom pydantic import BaseModel\nclass A(BaseModel):\n    x: int"
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--top", type=int, default=15, help="rows of -X importtime to show")
    args = parser.parse_args()

    uncached_env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="llmroute-pyc-") as cache:
        cached_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {
            "PYTHONPYCACHEPREFIX": cache
        }
        probe(cached_env)  # prime the bytecode cache
        for code in FLOORS.values():
            floor_probe(cached_env, code)
        bare = bare_rss_kb(cached_env) / 1024
        # interleaved, so that the machine's noise hits llmroute and the floors alike
        runs: list[dict[str, object]] = []
        floor_times: dict[str, list[float]] = {label: [] for label in FLOORS}
        for _ in range(args.runs):
            runs.append(probe(cached_env))
            for label, code in FLOORS.items():
                floor_times[label].append(floor_probe(cached_env, code))
        cached = summarise(runs)
        floors = {label: statistics.median(times) for label, times in floor_times.items()}
        top = importtime_top(cached_env, args.top)
    uncached = summarise([probe(uncached_env) for _ in range(args.runs)])

    print(
        f"import llmroute: python {sys.version.split()[0]}, {args.runs} fresh subprocesses each, median"
    )
    print(f"llmroute from {cached['file']}")
    print()
    print(f"{'':<30} {'import ms':>10} {'(min-max)':>14} {'RSS MB':>8} {'+MB':>6} {'modules':>8}")
    for label, m in (
        ("bytecode cached (installed)", cached),
        ("uncached (this checkout)", uncached),
    ):
        spread = f"({m['ms_min']:.0f}-{m['ms_max']:.0f})"
        print(
            f"{label:<30} {m['ms']:>10.1f} {spread:>14} {m['rss_mb']:>8.1f} "
            f"{m['delta_mb']:>6.1f} {m['modules']:>8.0f}"
        )
    print(f"{'bare interpreter':<30} {'':>10} {'':>14} {bare:>8.1f}")
    print()
    print(
        "`import llmroute` loads only the error classes; the rest loads on first use "
        "(PEP 562). First use of llmroute.AsyncRouter after the import: "
        f"{cached['first_use_ms']:.0f} ms more, {cached['rss_used_mb']:.1f} MB resident."
    )
    print()
    print("for reference, the dependencies alone (same runs, interleaved with the above):")
    for label, ms in floors.items():
        print(f"  {label:<40} {ms:>6.1f} ms")
    print()
    imported = list(cached["imported"])  # type: ignore[call-overload]
    print("heavy/optional modules after `import llmroute`:")
    for name in HEAVY:
        state = "imported" if name in imported else "-"
        note = ""
        if name in FORBIDDEN:
            note = "  (optional extra: must not be imported)"
        elif name in LAZY:
            note = "  (imported lazily by design)"
        print(f"  {name:<18} {state:<9}{note}")
    print()
    print("slowest imports under llmroute by cumulative time (-X importtime, cached, one run):")
    print(f"  {'self ms':>8} {'cum ms':>8}  module")
    for own, cumulative, name in top:
        print(f"  {own / 1000:>8.1f} {cumulative / 1000:>8.1f}  {name}")

    checks = [
        ("import time < 150 ms", f"{cached['ms']:.0f} ms", float(cached["ms"]) < 150),  # type: ignore[arg-type]
        ("resident memory < 40 MB", f"{cached['rss_mb']:.1f} MB", float(cached["rss_mb"]) < 40),  # type: ignore[arg-type]
        (
            "no optional extra imported",
            ", ".join(n for n in FORBIDDEN if n in imported) or "none",
            not any(n in imported for n in FORBIDDEN),
        ),
        (
            "aiohttp/genai_prices not imported",
            ", ".join(n for n in LAZY if n in imported) or "none",
            not any(n in imported for n in LAZY),
        ),
    ]
    print()
    print("targets:")
    for label, value, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label:<36} {value}")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
