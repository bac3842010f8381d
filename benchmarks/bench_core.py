"""llmroute's core speed targets, measured against raw aiohttp and the openai SDK.

    python benchmarks/bench_core.py [--requests 3000 --concurrency 100 --chunks 200]

Three clients (four with TensorZero) hit the same loopback OpenAI-compatible
upstream (see `upstream.py`, run in its own process):

- ``raw aiohttp``: one ``aiohttp.ClientSession``; POST the JSON body, read the
  response, ``json.loads`` it. Streams: ``readline()`` on the body and
  ``json.loads`` of each ``data:`` payload.
- ``llmroute``: an `AsyncRouter` with one provider ``up`` and a route ``chat``
  whose single target is ``up/bench-model``.
- ``openai SDK``: ``openai.AsyncOpenAI(base_url=..., api_key="x")``.
- ``TensorZero`` (optional, only when the ``tensorzero`` package is installed;
  skipped with a printed reason otherwise): TensorZero's embedded gateway, a
  Rust core called from Python. ``AsyncTensorZeroGateway.build_embedded()``
  reads a temporary TOML config with one OpenAI-compatible model per upstream
  model and observability off (it writes nothing); each request is
  ``inference(model_name=..., input={"messages": MESSAGES})``, streamed or not.
  It is not a dependency of llmroute: ``pip install tensorzero`` to see its row.

Measured per client, with the clients interleaved in every phase (the
machine is small and noisy, so noise should hit every client alike):

- sequential latency: p50 and p99 of ``--sequential`` requests made one at a
  time, the clients taking turns request by request;
- throughput: ``--rounds`` runs of ``--requests`` requests by
  ``--concurrency`` concurrent workers, the clients taking turns run by run;
  the median req/s and the client process's CPU time per request;
- stream cost: the median time to consume a whole stream of ``--chunks``
  content chunks and of a 1-chunk stream, the clients taking turns; the
  per-chunk cost is the difference divided by the difference in chunk count,
  so the fixed per-request cost cancels out.

Then the ratios against the targets, PASS/FAIL each, and TensorZero's ratios
beside llmroute's (shown, with no verdict).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from upstream import MODEL, SHORT_CHUNKS, SHORT_MODEL, completion_body, running_upstream

MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
CLIENTS = ("raw aiohttp", "llmroute", "openai SDK", "TensorZero")
#: Clients that run only when their package is installed: name -> (module, why skipped).
OPTIONAL = {
    "TensorZero": (
        "tensorzero",
        "the tensorzero package is not installed (optional; pip install tensorzero)",
    )
}
#: The upstream's non-streamed answer, which a client must hand back.
ANSWER = json.loads(completion_body())["choices"][0]["message"]["content"]


# ---------------------------------------------------------------- clients


class Client:
    """One client stack: a non-streamed request, and a whole stream read."""

    name: str

    async def start(self) -> None:
        """Finish any asynchronous setup (only TensorZero needs one)."""

    async def request(self) -> None:
        raise NotImplementedError

    async def stream(self, short: bool = False) -> int:
        """Consume one stream; return the number of chunks seen."""
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class RawAiohttp(Client):
    name = "raw aiohttp"

    def __init__(self, port: int) -> None:
        import aiohttp

        self._url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self._headers = {
            "content-type": "application/json",
            "authorization": "Bearer x",
        }
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))

    async def request(self) -> None:
        body = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
        async with self._session.post(self._url, data=body, headers=self._headers) as response:
            data = json.loads(await response.read())
        assert data["choices"][0]["message"]["content"]

    async def stream(self, short: bool = False) -> int:
        model = SHORT_MODEL if short else MODEL
        body = json.dumps({"model": model, "messages": MESSAGES, "stream": True}).encode()
        count = 0
        async with self._session.post(self._url, data=body, headers=self._headers) as response:
            content = response.content
            while line := await content.readline():
                if line.startswith(b"data:"):
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        break
                    json.loads(payload)
                    count += 1
        return count

    async def aclose(self) -> None:
        await self._session.close()


class LLMRoute(Client):
    name = "llmroute"

    def __init__(self, port: int) -> None:
        import llmroute

        config = {
            "providers": {
                "up": {"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": "x"}
            },
            "routes": {
                "chat": {"targets": [f"up/{MODEL}"]},
                # only for the short stream that isolates the per-chunk cost
                "chat-short": {"targets": [f"up/{SHORT_MODEL}"]},
            },
            # The core targets measure routing; what recording adds (the SQLite store,
            # OpenTelemetry) is measured on its own by bench_observe.py.
            "logging": {"store": None},
            "telemetry": {"enabled": False},
        }
        self._router = llmroute.AsyncRouter(config)
        self._create = self._router.chat.completions.create

    async def request(self) -> None:
        completion = await self._create(model="chat", messages=MESSAGES)
        assert completion.choices[0].message.content

    async def stream(self, short: bool = False) -> int:
        count = 0
        stream = await self._create(
            model="chat-short" if short else "chat", messages=MESSAGES, stream=True
        )
        async for _ in stream:
            count += 1
        return count

    async def aclose(self) -> None:
        await self._router.aclose()


class OpenAISDK(Client):
    name = "openai SDK"

    def __init__(self, port: int) -> None:
        import openai

        self._client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
        self._create = self._client.chat.completions.create

    async def request(self) -> None:
        completion = await self._create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        assert completion.choices[0].message.content

    async def stream(self, short: bool = False) -> int:
        count = 0
        model = SHORT_MODEL if short else MODEL
        stream = await self._create(model=model, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        async for _ in stream:
            count += 1
        return count

    async def aclose(self) -> None:
        await self._client.close()


def tensorzero_config(port: int) -> str:
    """TensorZero's config: the two upstream models, OpenAI-compatible, no observability."""
    models = []
    for name in (MODEL, SHORT_MODEL):
        models.append(
            f'[models."{name}"]\n'
            'routing = ["up"]\n\n'
            f'[models."{name}".providers.up]\n'
            'type = "openai"\n'
            f'model_name = "{name}"\n'
            f'api_base = "http://127.0.0.1:{port}/v1/"\n'
            'api_key_location = "none"\n'
        )
    return "\n".join([*models, "[gateway.observability]\nenabled = false\n"])


class TensorZero(Client):
    """TensorZero's embedded gateway, called as its Python client documents."""

    name = "TensorZero"

    def __init__(self, port: int) -> None:
        self._port = port
        self._dir = tempfile.TemporaryDirectory(prefix="bench-tensorzero-")
        self._gateway: object = None

    async def start(self) -> None:
        # Its Rust core logs its startup at INFO to stdout, into the report, unless
        # RUST_LOG says otherwise (read when the module is imported).
        os.environ.setdefault("RUST_LOG", "warn")
        from tensorzero import AsyncTensorZeroGateway

        path = Path(self._dir.name) / "tensorzero.toml"
        path.write_text(tensorzero_config(self._port))
        gateway = await AsyncTensorZeroGateway.build_embedded(  # type: ignore[misc]
            config_file=str(path), async_setup=True
        )
        self._gateway = gateway
        self._inference = gateway.inference
        # the answer must be the upstream's, not something TensorZero made up
        response = await self._inference(model_name=MODEL, input={"messages": MESSAGES})
        if response.content[0].text != ANSWER:
            raise RuntimeError(f"TensorZero did not return the upstream's answer: {response!r}")

    async def request(self) -> None:
        response = await self._inference(model_name=MODEL, input={"messages": MESSAGES})
        assert response.content[0].text

    async def stream(self, short: bool = False) -> int:
        count = 0
        model = SHORT_MODEL if short else MODEL
        stream = await self._inference(model_name=model, input={"messages": MESSAGES}, stream=True)
        async for _ in stream:
            count += 1
        return count

    async def aclose(self) -> None:
        if self._gateway is not None:
            await self._gateway.close()  # type: ignore[attr-defined]
        self._dir.cleanup()


FACTORIES: dict[str, Callable[[int], Client]] = {
    "raw aiohttp": RawAiohttp,
    "llmroute": LLMRoute,
    "openai SDK": OpenAISDK,
    "TensorZero": TensorZero,
}


# ---------------------------------------------------------------- measurements


@dataclass
class Samples:
    """Everything measured for one client."""

    latencies_us: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    stream_long_us: list[float] = field(default_factory=list)
    stream_short_us: list[float] = field(default_factory=list)
    chunks_long: int = 0
    chunks_short: int = 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def rotations(names: list[str], count: int) -> Iterator[list[str]]:
    """`count` orderings of `names`, each starting one later than the last."""
    for i in range(count):
        shift = i % len(names)
        yield names[shift:] + names[:shift]


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1e6


async def concurrent(
    call: Callable[[], Awaitable[object]], n: int, concurrency: int
) -> tuple[float, float]:
    """(requests per second, client CPU µs per request) for `n` calls by `concurrency` workers."""
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n * 1e6


async def warm_up(client: Client, concurrency: int) -> None:
    for _ in range(200):
        await client.request()
    # open the whole pool, so no measured run pays for connecting
    await concurrent(client.request, concurrency * 5, concurrency)
    for _ in range(10):
        await client.stream()
        await client.stream(short=True)


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, port: int) -> dict[str, Samples]:
    """Measure every client; each phase interleaves the clients, so noise hits them alike."""
    clients: dict[str, Client] = {}
    results = {name: Samples() for name in args.clients}
    names = list(args.clients)
    try:
        for name in names:
            clients[name] = FACTORIES[name](port)
            await clients[name].start()
        for client in clients.values():
            await warm_up(client, args.concurrency)
        progress("warmed up")

        # sequential latency: one request per client in turn
        gc.collect()
        for order in rotations(names, args.sequential):
            for name in order:
                results[name].latencies_us.append(await timed(clients[name].request))
        progress("latency done")

        # throughput: a full run per client per round
        for number, order in enumerate(rotations(names, args.rounds), 1):
            for name in order:
                gc.collect()
                rps, cpu = await concurrent(clients[name].request, args.requests, args.concurrency)
                results[name].rps.append(rps)
                results[name].cpu_us.append(cpu)
            progress(f"throughput round {number}/{args.rounds} done")

        # streams: a long and a short stream per client in turn
        gc.collect()
        for name in names:
            results[name].chunks_long = await clients[name].stream()
            results[name].chunks_short = await clients[name].stream(short=True)
        for order in rotations(names, args.streams):
            for name in order:
                client = clients[name]
                results[name].stream_long_us.append(await timed(client.stream))
                results[name].stream_short_us.append(
                    await timed(lambda client=client: client.stream(short=True))  # type: ignore[misc]
                )
        progress("streams done")
    finally:
        for client in clients.values():
            await client.aclose()
    return results


# ---------------------------------------------------------------- report


@dataclass
class Summary:
    p50_us: float
    p99_us: float
    rps: float
    cpu_us: float
    stream_us: float
    chunk_us: float


def summarise(samples: Samples, chunks: int) -> Summary:
    med = statistics.median
    long_us, short_us = med(samples.stream_long_us), med(samples.stream_short_us)
    return Summary(
        p50_us=med(samples.latencies_us),
        p99_us=percentile(samples.latencies_us, 0.99),
        rps=med(samples.rps),
        cpu_us=med(samples.cpu_us),
        stream_us=long_us,
        chunk_us=(long_us - short_us) / (chunks - SHORT_CHUNKS),
    )


def paired_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of a/b, each round's figures measured back to back."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def report(args: argparse.Namespace, results: dict[str, Samples], skipped: list[str]) -> bool:
    summaries = {name: summarise(s, args.chunks) for name, s in results.items()}
    print(
        f"llmroute core benchmark: python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"latency: {args.sequential} sequential requests per client, clients interleaved; "
        f"throughput: {args.requests} requests at concurrency {args.concurrency}, "
        f"{args.rounds} rounds (median); streams: {args.chunks} vs {SHORT_CHUNKS} content "
        f"chunks, {args.streams} of each per client, interleaved (median)"
    )
    spec = importlib.util.find_spec("llmroute")
    origin = Path(spec.origin).parent if spec and spec.origin else "?"
    packages = ["aiohttp", "pydantic", "openai"]
    if "TensorZero" in results:
        packages.append("tensorzero")
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in packages)
    print(f"llmroute from {origin}; {versions}")
    for line in skipped:
        print(line)
    print()
    header = (
        f"{'client':<21} {'p50 µs':>8} {'p99 µs':>8} {'req/s c=' + str(args.concurrency):>12} "
        f"{'CPU µs/req':>11} {'stream ms':>10} {'µs/chunk':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, s in summaries.items():
        print(
            f"{name:<21} {s.p50_us:>8.0f} {s.p99_us:>8.0f} {s.rps:>12.0f} "
            f"{s.cpu_us:>11.0f} {s.stream_us / 1000:>10.2f} {s.chunk_us:>9.2f}"
        )
    print()
    print("throughput per round (req/s):")
    for name, s in results.items():
        print(f"  {name:<21} " + "  ".join(f"{r:6.0f}" for r in s.rps))
    print(
        f"stream events read per {args.chunks}-chunk / {SHORT_CHUNKS}-chunk stream: "
        + ", ".join(f"{name} {s.chunks_long}/{s.chunks_short}" for name, s in results.items())
    )
    if "raw aiohttp" not in summaries:
        return True
    ok = targets(summaries, results, args)
    if "TensorZero" in summaries:
        beside_tensorzero(summaries, results, args.concurrency, args.chunks)
    return ok


def target_rows(
    subject: str, summaries: dict[str, Summary], results: dict[str, Samples], concurrency: int
) -> list[tuple[str, str, bool]]:
    """(label, value, ok) for each target, for the llmroute-like client `subject`."""
    raw, lr = summaries["raw aiohttp"], summaries[subject]
    rows: list[tuple[str, str, bool]] = []
    ratio = lr.p50_us / raw.p50_us
    rows.append(("p50 latency vs raw aiohttp", f"{ratio:.2f}x (target <= 1.20x)", ratio <= 1.2))
    share = paired_ratio(results[subject].rps, results["raw aiohttp"].rps)
    rows.append(
        (
            f"throughput c={concurrency} vs raw aiohttp",
            f"{share:.2f}x (target >= 0.75x)",
            share >= 0.75,
        )
    )
    extra = lr.chunk_us - raw.chunk_us
    rows.append(
        (
            "stream cost over raw SSE parsing",
            f"{extra:+.2f} µs/chunk (target <= 10 µs)",
            extra <= 10,
        )
    )
    if "openai SDK" in summaries:
        sdk = summaries["openai SDK"]
        faster = sdk.p50_us / lr.p50_us
        rows.append(
            ("p50 latency vs openai SDK", f"{faster:.2f}x faster (target > 1x)", faster > 1)
        )
        gain = paired_ratio(results[subject].rps, results["openai SDK"].rps)
        rows.append(
            (f"throughput c={concurrency} vs openai SDK", f"{gain:.2f}x (target > 1x)", gain > 1)
        )
    return rows


def targets(
    summaries: dict[str, Summary], results: dict[str, Samples], args: argparse.Namespace
) -> bool:
    if "llmroute" not in summaries:
        return True
    rows = target_rows("llmroute", summaries, results, args.concurrency)
    print()
    print("targets for llmroute (throughput ratios: median of per-round ratios):")
    for label, value, passed in rows:
        print(f"  {'PASS' if passed else 'FAIL'}  {label:<34} {value}")
    return all(passed for _, _, passed in rows)


def beside_tensorzero(
    summaries: dict[str, Summary], results: dict[str, Samples], concurrency: int, chunks: int
) -> None:
    """TensorZero's ratios beside llmroute's, and llmroute over TensorZero: no verdict."""
    raw = summaries["raw aiohttp"]
    names = [name for name in ("llmroute", "TensorZero") if name in summaries]
    print()
    print("beside TensorZero's embedded gateway (same runs; shown, no verdict):")
    print(f"  {'':<34} " + " ".join(f"{name:>11}" for name in names))
    throughput = (paired_ratio(results[name].rps, results["raw aiohttp"].rps) for name in names)
    print(
        f"  {f'throughput c={concurrency} vs raw aiohttp':<34} "
        + " ".join(f"{ratio:>10.2f}x" for ratio in throughput)
    )
    p50 = (summaries[name].p50_us / raw.p50_us for name in names)
    print(f"  {'p50 latency vs raw aiohttp':<34} " + " ".join(f"{r:>10.2f}x" for r in p50))
    if "llmroute" not in summaries:
        return
    lead = paired_ratio(results["llmroute"].rps, results["TensorZero"].rps)
    per_round = ", ".join(
        f"{a / b:.2f}"
        for a, b in zip(results["llmroute"].rps, results["TensorZero"].rps, strict=True)
    )
    print(
        f"  llmroute / TensorZero throughput c={concurrency}: {lead:.2f}x "
        f"(median of per-round ratios; rounds: {per_round})"
    )
    lr, tz = summaries["llmroute"], summaries["TensorZero"]
    print(
        f"  llmroute / TensorZero p50 latency: {lr.p50_us / tz.p50_us:.2f}x "
        f"({lr.p50_us:.0f} vs {tz.p50_us:.0f} µs; below 1 is faster)"
    )
    print(
        f"  llmroute / TensorZero {chunks}-chunk stream time: {lr.stream_us / tz.stream_us:.2f}x "
        f"({lr.stream_us / 1000:.2f} vs {tz.stream_us / 1000:.2f} ms; below 1 is faster)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per throughput run")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per stream")
    parser.add_argument(
        "--sequential", type=int, default=1000, help="sequential requests per client (latency)"
    )
    parser.add_argument("--streams", type=int, default=40, help="streams of each length per client")
    parser.add_argument("--rounds", type=int, default=12, help="throughput runs per client")
    parser.add_argument(
        "--clients",
        nargs="+",
        choices=CLIENTS,
        default=list(CLIENTS),
        help="which stacks to run",
    )
    args = parser.parse_args(argv)
    skipped = []
    for name, (module, why) in OPTIONAL.items():
        if name in args.clients and importlib.util.find_spec(module) is None:
            args.clients = [client for client in args.clients if client != name]
            skipped.append(f"{name}: skipped, {why}")
            progress(skipped[-1])
    started = time.perf_counter()
    with running_upstream(chunks=args.chunks) as port:
        results = asyncio.run(run(args, port))
    ok = report(args, {name: results[name] for name in args.clients}, skipped)
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
