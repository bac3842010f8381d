"""The gateway's overhead: ``llmroute serve`` in front of a local upstream, against the upstream alone.

    python benchmarks/bench_server.py [--requests 3000 --sequential 500 --chunks 20 --rounds 2]

Three processes, so that none shares an event loop with another: the
upstream (`upstream.py`, run in its own process), ``llmroute serve`` (one
worker, started as the command a user would run, with a config whose route
``bench`` has the upstream as its single target), and this script's client
(aiohttp), which loads both:

- concurrency 1: ``--sequential`` requests one at a time, direct and through
  llmroute taking turns request by request; p50 and p99 of each, and the
  added latency (llmroute minus direct);
- concurrency 50: ``--rounds`` runs of ``--requests`` requests by 50
  concurrent workers, direct and through llmroute taking turns run by run;
  requests per second of each, and llmroute's as a share of direct (the
  median of the per-round shares).

Each is measured non-streamed and streamed (a stream of ``--chunks`` content
chunks, read to its end). A bare pass-through proxy (uvicorn and aiohttp, no
llmroute, in its own process) is loaded beside them as a standing row: it is
the floor for any Python gateway on this stack, what the extra hop alone costs
on the machine. Then the resident memory of the ``llmroute serve`` process
after the load, and the targets, PASS/FAIL each (issue 20): at concurrency 50,
at least 60% of the bare proxy's throughput (the median of per-round ratios);
at concurrency 1, an added p50 at most the bare proxy's plus 0.3 ms; and, as
before, at least 25% of the direct throughput, under 1 ms added p50, under
80 MB resident. The exit status is 0 only if every target passes.

For streams, the latency targets apply to the time to the first token (the
first content chunk): a stream's later chunks arrive while the reader reads,
and here the upstream sends a whole stream at once, so the time to its end
adds up llmroute's per-chunk work (printed too, as ``streamed: whole``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from upstream import MODEL, free_port, running_upstream

MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
#: The first content chunk's text, as upstream.py sends it (and llmroute relays it).
FIRST_TOKEN = b'" tok0"'
TARGET_SHARE = 0.25
TARGET_ADDED_P50_MS = 1.0
TARGET_RSS_MB = 80.0
#: Against the bare pass-through proxy, the floor (issue 20): throughput share at c=50, and
#: what llmroute may add to the floor's p50 at c=1.
TARGET_FLOOR_SHARE = 0.6
FLOOR = "bare proxy"
TARGET_OVER_FLOOR_MS = 0.3


@contextmanager
def running_gateway(
    upstream_port: int, extra: list[str], log: bool = False
) -> Iterator[tuple[int, int]]:
    """``llmroute serve`` in front of the upstream, from a config file with only the
    provider and the route (so no request log), or with a SQLite request log when `log`;
    yields its port and process id."""
    port = free_port()
    config = (
        "providers:\n"
        f"  up: {{type: openai, base_url: 'http://127.0.0.1:{upstream_port}/v1', api_key: x}}\n"
        f"routes:\n  bench: {{targets: [up/{MODEL}]}}\n"
    ) + ("logging: {store: 'sqlite:///llmroute.db'}\n" if log else "")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "llmroute.yaml"
        path.write_text(config)
        command = [sys.executable, "-m", "llmroute.cli", "serve", "--config", str(path)]
        process = subprocess.Popen(
            [*command, "--port", str(port), *extra],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", process)
            yield port, process.pid
        finally:
            process.terminate()
            process.wait(30)


def floor_app(upstream_port: int) -> Any:
    """A bare pass-through proxy to the upstream as an ASGI app: one aiohttp session, the
    body forwarded as it came and the answer as it arrives; nothing else."""
    import aiohttp

    url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    sessions: list[aiohttp.ClientSession] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            for session in sessions:
                await session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":  # the readiness check
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = (await receive())["body"]
        if not sessions:
            sessions.append(aiohttp.ClientSession())
        headers = {"content-type": "application/json"}
        async with sessions[0].post(url, data=body, headers=headers) as response:
            kind = response.headers["content-type"].encode()
            await send({"type": "http.response.start", "status": response.status,
                        "headers": [(b"content-type", kind)]})  # fmt: skip
            async for data in response.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def floor_proxy(port: int, upstream_port: int) -> None:
    """Serve the bare pass-through proxy (`floor_app`) with uvicorn."""
    import uvicorn

    app = floor_app(upstream_port)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def running_floor(upstream_port: int) -> Iterator[int]:
    """The bare proxy in its own process; yields its port."""
    port = free_port()
    command = [sys.executable, __file__, "--floor-proxy", str(port),
               "--upstream-port", str(upstream_port)]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", process)
        yield port
    finally:
        process.terminate()
        process.wait(30)


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until `url` answers, or raise if `process` ended or 30 s passed."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"{url} did not come up:\n{err}") from None
            time.sleep(0.1)


def rss_mb(pid: int) -> float:
    """The resident set size of process `pid`, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# ---------------------------------------------------------------- the load


class Target:
    """One endpoint to load: its URL and the model to ask for."""

    def __init__(self, name: str, port: int, model: str) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self.bodies = {
            stream: json.dumps({"model": model, "messages": MESSAGES, "stream": stream}).encode()
            for stream in (False, True)
        }

    async def one(self, session: aiohttp.ClientSession, stream: bool) -> tuple[float, float]:
        """One request, read to its end: seconds to its first token, and to its end.

        The first token is the first content chunk of a stream (`FIRST_TOKEN`,
        the same bytes direct and through llmroute); the whole answer otherwise.
        """
        started = time.perf_counter()
        headers = {"content-type": "application/json", "authorization": "Bearer x"}
        async with session.post(self.url, data=self.bodies[stream], headers=headers) as response:
            if not stream:
                body = await response.read()
                first = time.perf_counter()
            else:
                parts, first = [], 0.0
                async for data in response.content.iter_any():
                    parts.append(data)
                    if not first and FIRST_TOKEN in b"".join(parts[-2:]):
                        first = time.perf_counter()
                body = b"".join(parts)
            if response.status != 200 or (stream and not body.endswith(b"data: [DONE]\n\n")):
                raise RuntimeError(f"{self.name}: HTTP {response.status}: {body[:300]!r}")
        ended = time.perf_counter()
        return first - started, ended - started


async def sequential(
    targets: list[Target], session: aiohttp.ClientSession, stream: bool, count: int
) -> dict[str, list[tuple[float, float]]]:
    """`count` requests one at a time per target, the targets taking turns."""
    times: dict[str, list[tuple[float, float]]] = {t.name: [] for t in targets}
    for _ in range(count):
        for target in targets:
            times[target.name].append(await target.one(session, stream))
    return times


async def burst(
    target: Target, session: aiohttp.ClientSession, stream: bool, total: int, concurrency: int
) -> float:
    """`total` requests from `concurrency` workers; requests per second."""
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await target.one(session, stream)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(times: dict[str, list[tuple[float, float]]], which: int) -> dict[str, dict[str, float]]:
    """p50 and p99 in ms of the first-token (0) or whole (1) times, per target."""
    return {
        q: {n: percentile([t[which] for t in v], level) * 1000 for n, v in times.items()}
        for q, level in (("p50", 0.5), ("p99", 0.99))
    }


async def measure(args: argparse.Namespace, targets: list[Target]) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    results: dict[str, object] = {}
    async with aiohttp.ClientSession(connector=connector) as session:
        for stream in (False, True):
            for target in targets:  # warm up: pools, caches, code paths
                await burst(target, session, stream, 200, args.concurrency)
            times = await sequential(targets, session, stream, args.sequential)
            shares: list[dict[str, float]] = []
            floors: list[float] = []  # llmroute's throughput over the bare proxy's, per round
            rates: dict[str, list[float]] = {t.name: [] for t in targets}
            for number in range(args.rounds):
                ordered = targets if number % 2 == 0 else targets[::-1]
                round_rates = {
                    t.name: await burst(t, session, stream, args.requests, args.concurrency)
                    for t in ordered
                }
                for name, rate in round_rates.items():
                    rates[name].append(rate)
                shares.append({n: r / round_rates["direct"] for n, r in round_rates.items()})
                floors.append(round_rates["llmroute"] / round_rates[FLOOR])
            throughput = {
                "rps": {n: statistics.median(v) for n, v in rates.items()},
                "share": {n: statistics.median(s[n] for s in shares) for n in rates},
                "of floor": statistics.median(floors),
            }
            if stream:
                results["streamed: first token"] = {**latency(times, 0), **throughput}
                results["streamed: whole"] = latency(times, 1)
            else:
                results["non-streamed"] = {**latency(times, 1), **throughput}
    return results


def children_rss_mb(pid: int) -> float:
    """The resident memory of process `pid`'s children (the request log's writer), in MB."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += rss_mb(int(child))
            except FileNotFoundError:  # ended meanwhile
                continue
    return total


def report(results: dict[str, object], rss: float, children: float, concurrency: int) -> bool:
    ok = True
    print(f"{'':24}{'c=1 p50':>9}{'p99':>8}{'added p50':>11}{'p99':>8}"
          f"{f'c={concurrency} req/s':>14}{'share':>7}   (ms; share: of direct)")  # fmt: skip
    for kind, figures in results.items():
        assert isinstance(figures, dict)
        print(kind)
        p50, p99 = figures["p50"], figures["p99"]
        for name in p50:
            line = f"  {name:<22}{p50[name]:>9.2f}{p99[name]:>8.2f}"
            if name != "direct":
                line += f"{p50[name] - p50['direct']:>11.2f}{p99[name] - p99['direct']:>8.2f}"
            else:
                line += f"{'':>19}"
            if "rps" in figures:
                line += f"{figures['rps'][name]:>14.0f}"
                line += f"{figures['share'][name]:>7.0%}" if name != "direct" else ""
            print(line)
    print(
        f"\nllmroute serve resident memory after the load: {rss:.1f} MB "
        f"(its child processes, the request log's writer: {children:.1f} MB more)\n"
    )
    for kind in ("non-streamed", "streamed: first token"):
        figures = results[kind]
        assert isinstance(figures, dict)
        added = figures["p50"]["llmroute"] - figures["p50"]["direct"]
        floor_added = figures["p50"][FLOOR] - figures["p50"]["direct"]
        share = figures["share"]["llmroute"]
        of_floor = figures["of floor"]
        stream = kind.split(":")[0]
        for label, passed in (
            (f"{stream}: c={concurrency} throughput >= {TARGET_FLOOR_SHARE:.0%} of the bare "
             f"proxy's ({of_floor:.2f}x)", of_floor >= TARGET_FLOOR_SHARE),
            (f"{kind}: added p50 at c=1 <= the bare proxy's + {TARGET_OVER_FLOOR_MS:g} ms "
             f"({added:.2f} ms against {floor_added:.2f} + {TARGET_OVER_FLOOR_MS:g})",
             added <= floor_added + TARGET_OVER_FLOOR_MS),
            (f"{stream}: c={concurrency} throughput >= {TARGET_SHARE:.0%} of direct ({share:.0%})",
             share >= TARGET_SHARE),
            (f"{kind}: added p50 at c=1 < {TARGET_ADDED_P50_MS:g} ms ({added:.2f} ms)",
             added < TARGET_ADDED_P50_MS),
        ):  # fmt: skip
            ok &= passed
            print(f"{'PASS' if passed else 'FAIL'}  {label}")
    passed = rss < TARGET_RSS_MB
    ok &= passed
    print(f"{'PASS' if passed else 'FAIL'}  resident memory < {TARGET_RSS_MB:g} MB ({rss:.1f} MB)")
    return ok


def client_main(args: argparse.Namespace) -> None:
    """The load generator, in its own process: prints the results as JSON."""
    targets = [Target("direct", args.upstream_port, MODEL)]
    targets.append(Target(FLOOR, args.floor_port, MODEL))
    targets.append(Target("llmroute", args.gateway_port, "bench"))
    print(json.dumps(asyncio.run(measure(args, targets))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per burst")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--sequential", type=int, default=500, help="requests at concurrency 1")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--rounds", type=int, default=2, help="bursts per target and mode")
    parser.add_argument("--serve-args", default="", help="extra `llmroute serve` arguments")
    parser.add_argument(
        "--log", action="store_true",
        help="give the gateway a SQLite request log (its config file has none by default)",
    )  # fmt: skip
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor-proxy", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--floor-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--gateway-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return 0
    if args.floor_proxy:
        floor_proxy(args.floor_proxy, args.upstream_port)
        return 0
    import uvicorn

    loops = "uvloop" if _has("uvloop") else "asyncio"
    parsers = "httptools" if _has("httptools") else "h11"
    print(f"Python {sys.version.split()[0]}, uvicorn {uvicorn.__version__} ({parsers}, {loops}), "
          f"{os.cpu_count()} cores; {args.chunks} chunks per stream; the gateway's request log "
          f"{'on (SQLite)' if args.log else 'off (none configured)'}; the machine's load "
          f"average {os.getloadavg()[0]:.2f} before the run\n")  # fmt: skip
    with (
        running_upstream(chunks=args.chunks) as upstream_port,
        running_gateway(upstream_port, args.serve_args.split(), args.log) as (
            gateway_port,
            pid,
        ),
        running_floor(upstream_port) as floor_port,
    ):
        command = [sys.executable, __file__, "--client", "--upstream-port", str(upstream_port),
                   "--gateway-port", str(gateway_port), "--floor-port", str(floor_port),
                   "--requests", str(args.requests), "--concurrency", str(args.concurrency),
                   "--sequential", str(args.sequential), "--rounds", str(args.rounds)]  # fmt: skip
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rss, children = rss_mb(pid), children_rss_mb(pid)
    passed = report(json.loads(output), rss, children, args.concurrency)
    # the targets at concurrency 1 are absolute times, which a busy machine stretches
    print(f"\nthe machine's load average after the run: {os.getloadavg()[0]:.2f} (1 min)")
    return 0 if passed else 1


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
