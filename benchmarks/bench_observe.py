"""What recording costs: a router with the SQLite store (and OpenTelemetry) against one without.

    python benchmarks/bench_observe.py [--requests 3000 --concurrency 100 --rounds 9]
        [--writer process|inline] [--batch-size N] [--priced]

Three `AsyncRouter`s in the same process hit the same loopback upstream (see
`upstream.py`, its own process):

- ``off``: no log store, telemetry disabled (the recorder stage does nothing);
- ``log``: ``logging.store`` a SQLite file (its batches written by
  ``--writer``: ``logging.writer``, a writer process by default), telemetry
  disabled: what the request log costs (issue 20, target 3);
- ``on``: the same log, and OpenTelemetry through the SDK (a
  `TracerProvider` with a `BatchSpanProcessor` into an in-memory span
  exporter, a `MeterProvider` with an in-memory metric reader): the SDK's
  own cost comes on top (its floor is printed).

Measured with the three interleaved (the machine is small and noisy): the p50
of ``--sequential`` requests made one at a time, taking turns request by
request; ``--rounds`` runs of ``--requests`` at ``--concurrency``, taking
turns run by run in an order rotated each round (none always runs after
another's background work), each run's records flushed inside it. The throughput
ratios are the median over rounds of each round's ratio to that round's
``off`` run (runs next to each other in time see the same machine), with
their range. Targets: with the log, throughput at least 0.9x of ``off``
(printed as ``recording (SQLite log)``); for ``log`` and ``on``, at most 10%
more p50 latency and at most 10% less throughput. Every request of the
``log`` and ``on`` routers must be in the store, and every ``on`` request
have its spans. The CPU this process spends per request is printed for each
router, and the writer processes' CPU per stored record (theirs, not this
process's); and the garbage collector's time per request in each router's runs,
with its collections of each generation (a full collection is made before each
run, outside it, so that one run's garbage is not collected in the next: a full
one within a run is that run's own). ``--batch-size`` sets ``logging.batch_size`` for ``log``
and ``on`` (the default: the configuration's). The routers' target is a model
genai-prices has no price for (a self-hosted model's case: its cost is None, with
nothing to compute); ``--priced`` routes to ``gpt-4o-mini``, whose cost is computed
for each record (by the store, from the flat rates the router holds).

Then the store's absorption: synthetic finished requests are fed to a
recorder (the same path a request's end takes: queue, batch, worker thread,
record building, SQLite) at 10,000 per second for ``--absorb-seconds``,
checking that none is dropped or lost; and as fast as possible, for the
highest rate it sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import llmroute
from llmroute._request import RequestOptions, validate_chat_request
from llmroute._types import AttemptInfo, RouteInfo, TokenUsage
from llmroute.observe import SqliteStore
from llmroute.pipeline.stage import Outcome, RequestContext
from upstream import MODEL, running_upstream

MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]


#: The model the routers' target names (``--priced``: one genai-prices has a price for, so
#: that each record's cost is computed; the upstream answers any model alike).
TARGET_MODEL = {"priced": "gpt-4o-mini", "unpriced": MODEL}


def router(
    port: int,
    store: Path | None,
    otel: bool,
    writer: str = "process",
    batch: int | None = None,
    model: str = MODEL,
) -> tuple[llmroute.AsyncRouter, Any]:
    config: dict[str, Any] = {
        "providers": {
            "up": {"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": "x"}
        },
        "routes": {"chat": {"targets": [f"up/{model}"]}},
        "logging": {"store": None if store is None else f"sqlite:///{store}", "writer": writer},
        "telemetry": {"enabled": otel},
    }
    if batch is not None:
        config["logging"]["batch_size"] = batch
    if not otel:
        return llmroute.AsyncRouter(config), None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(spans, max_queue_size=65536))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    built = llmroute.AsyncRouter(config)
    built.use_telemetry(tracer_provider, meter_provider)
    return built, (spans, tracer_provider, meter_provider)


async def concurrent(call: Callable[[], Awaitable[object]], n: int, concurrency: int) -> float:
    """Requests per second for `n` calls by `concurrency` workers."""
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - began)


async def compare(args: argparse.Namespace, port: int, folder: Path) -> bool:
    model = TARGET_MODEL["priced" if args.priced else "unpriced"]
    print(f"the routers' target: up/{model}" + (" (priced)" if args.priced else ""))

    def logged(name: str, otel: bool) -> tuple[llmroute.AsyncRouter, Any]:
        store = folder / f"{name}.db"
        return router(port, store, otel, writer=args.writer, batch=args.batch_size, model=model)

    built = {
        "off": router(port, None, otel=False, model=model),
        "log": logged("log", otel=False),
        "on": logged("on", otel=True),
    }
    clients = {name: pair[0] for name, pair in built.items()}
    sent = dict.fromkeys(clients, 0)

    def call(name: str) -> Callable[[], Awaitable[object]]:
        create = clients[name].chat.completions.create

        async def one() -> None:
            sent[name] += 1
            reply = await create(model="chat", messages=MESSAGES)
            assert reply.choices[0].message.content

        return one

    settle = {"on": built["on"][1][1].force_flush}  # the span exporter's thread, done
    calls = {name: call(name) for name in clients}
    latencies, rates = await measure(args, clients, calls, settle)
    stored = {}
    children = os.times()
    for name, client in clients.items():
        await client.flush()
        status = client.recording
        await client.aclose()  # ends the writer processes (and waits for them)
        if name != "off":
            stored[name] = len(SqliteStore(folder / f"{name}.db").records())
            print(f"{name}: {stored[name]} stored of {sent[name]} sent, dropped {status.dropped}")
    ended = os.times()
    writers = ended.children_user + ended.children_system
    writers -= children.children_user + children.children_system
    spans, tracer_provider, meter_provider = built["on"][1]
    tracer_provider.force_flush()
    span_count = len(spans.get_finished_spans())
    tracer_provider.shutdown()
    meter_provider.shutdown()

    p50 = {name: statistics.median(values) for name, values in latencies.items()}
    rps = {name: statistics.median(values) for name, values in rates.items()}
    ratios = {
        name: sorted(r / o for r, o in zip(rates[name], rates["off"], strict=True))
        for name in clients
    }
    ratio = {name: statistics.median(values) for name, values in ratios.items()}
    print(f"sequential p50 over {args.sequential} requests each:")
    for name in clients:
        print(f"  {name:<12} {p50[name] * 1e6:8.0f} µs   {p50[name] / p50['off']:.3f}x")
    print(f"throughput: {args.rounds} runs of {args.requests} at c={args.concurrency} "
          f"(median req/s; median of the rounds' ratios to off, and their range):")  # fmt: skip
    for name in clients:
        runs = ", ".join(f"{r:.0f}" for r in rates[name])
        cpu = statistics.median(CPU[name]) * 1e6
        spread = f"{ratios[name][0]:.2f}-{ratios[name][-1]:.2f}"
        print(f"  {name:<12} {rps[name]:8.0f} req/s {ratio[name]:.3f}x ({spread})   "
              f"CPU {cpu:4.0f} µs/request   ({runs})")  # fmt: skip
    runs_of = args.rounds * args.requests
    print("garbage collection in those runs (µs per request; collections of generation 0, 1, 2):")
    for name in clients:
        seconds, counts = COLLECTED[name]
        print(f"  {name:<12} {seconds / runs_of * 1e6:5.1f}   {counts}")
    if args.writer == "process":
        total = sum(stored.values())  # the warm-up's records included, as in `writers`
        print(f"writer processes: {writers / total * 1e6:.0f} µs of CPU per stored record "
              f"(outside this process)")  # fmt: skip
    print(f"OpenTelemetry SDK alone, per request (2 spans, 3 histogram points): "
          f"{sdk_floor() * 1e6:.0f} µs of CPU; one request of the 'off' router at c=100: "
          f"{1e6 / rps['off']:.0f} µs")  # fmt: skip
    target = ratio["log"]
    print(f"{'PASS' if target >= 0.90 else 'FAIL'} recording (SQLite log) throughput "
          f"c={args.concurrency} vs off  {target:.2f}x (target >= 0.90x)")  # fmt: skip
    checks = []
    for name in ("log", "on"):
        lat, thr = p50[name] / p50["off"], ratio[name]
        checks += [
            (f"{name}: p50 latency {lat:.3f}x (<= 1.10x)", lat <= 1.10),
            (f"{name}: throughput {thr:.3f}x (>= 0.90x)", thr >= 0.90),
            (f"{name}: every request stored ({stored[name]} / {sent[name]})",
             stored[name] == sent[name]),
        ]  # fmt: skip
    checks.append((f"every request traced ({span_count} spans, 2 per request)",
                   span_count == 2 * sent["on"]))  # fmt: skip
    return report(checks)


async def measure(
    args: argparse.Namespace,
    clients: dict[str, llmroute.AsyncRouter],
    calls: dict[str, Callable[[], Awaitable[object]]],
    settle: dict[str, Callable[[], object]],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Sequential latencies and throughput runs, the clients taking turns; after each run,
    a client's records are flushed and its `settle` called (the CPU they take is the
    run's), so the next client's run starts with nothing of it still working."""
    for name in clients:  # warm up: pools, imports, the store's schema
        await concurrent(calls[name], args.concurrency * 5, args.concurrency)
    latencies: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(args.sequential):
        for name in clients:
            began = time.perf_counter()
            await calls[name]()
            latencies[name].append(time.perf_counter() - began)
    rates: dict[str, list[float]] = {name: [] for name in clients}
    names = list(clients)
    for turn in range(args.rounds):
        shift = turn % len(names)  # each client takes each place in turn
        for name in names[shift:] + names[:shift]:
            # a full collection now, outside the run: what the last run left to collect (the
            # `on` router's spans, thousands a run) is not collected in this one's
            gc.collect()
            collected, counts = COLLECTING["seconds"], list(COLLECTING["counts"])
            began = time.process_time()
            rates[name].append(await concurrent(calls[name], args.requests, args.concurrency))
            await clients[name].flush()  # the next client's run starts with no backlog
            if name in settle:
                settle[name]()
            CPU[name].append((time.process_time() - began) / args.requests)
            seconds, total = COLLECTED[name]
            COLLECTED[name] = (
                seconds + COLLECTING["seconds"] - collected,
                [
                    t + now - then
                    for t, now, then in zip(total, COLLECTING["counts"], counts, strict=True)
                ],
            )
    return latencies, rates


#: Per client, the process's CPU seconds per request of each throughput run
#: (recording included: the run's records are flushed inside the measurement).
CPU: dict[str, list[float]] = {"off": [], "log": [], "on": []}
#: The garbage collector's time and collections of each generation, all along
#: (`gc.callbacks`), and per client over its throughput runs: a full collection costs
#: tens of milliseconds, and falls in whichever run reaches its threshold.
COLLECTING: dict[str, Any] = {"seconds": 0.0, "counts": [0, 0, 0], "began": 0.0}
COLLECTED: dict[str, tuple[float, list[int]]] = {n: (0.0, [0, 0, 0]) for n in CPU}


def _collecting(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        COLLECTING["began"] = time.perf_counter()
    else:
        COLLECTING["seconds"] += time.perf_counter() - COLLECTING["began"]
        COLLECTING["counts"][info["generation"]] += 1


gc.callbacks.append(_collecting)


def sdk_floor(n: int = 5000) -> float:
    """CPU seconds the OpenTelemetry SDK itself takes for one request's spans and points."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracer = tracer_provider.get_tracer("floor")
    histogram = meter_provider.get_meter("floor").create_histogram("h")
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                  "gen_ai.request.model": "chat", "gen_ai.response.model": MODEL,
                  "server.address": "127.0.0.1", "server.port": 8000}  # fmt: skip
    more = {f"gen_ai.usage.n{i}": i for i in range(15)}
    began = time.process_time()
    for _ in range(n):
        span = tracer.start_span("chat chat", kind=SpanKind.CLIENT, attributes=attributes)
        span.set_attributes(more)
        tracer.start_span("chat m", attributes=attributes).end()
        span.end()
        for _ in range(3):
            histogram.record(1.0, attributes)
    took = (time.process_time() - began) / n
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return took


# ---------------------------------------------------------------- absorption


def synthetic(router: llmroute.AsyncRouter, n: int) -> list[tuple[RequestContext, Outcome]]:
    """`n` finished requests as the recorder receives them (two attempts each)."""
    route = router._catalog.resolve("chat")
    request = validate_chat_request({"model": "chat", "messages": MESSAGES})
    options = RequestOptions(user="u1", properties={"team": "search", "env": "prod"})
    completion = llmroute.ChatCompletion.model_validate(
        {"id": "c", "created": 1, "model": MODEL,
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                      "finish_reason": "stop"}]}
    )  # fmt: skip
    items = []
    now = time.time()
    for i in range(n):
        info = RouteInfo(request_id=f"lr-synthetic-{i:08d}", route="chat", strategy="ordered",
                         target=f"up/{MODEL}", provider="up", model=MODEL,
                         usage=TokenUsage(120, 30), latency_s=0.25)  # fmt: skip
        info.attempts = [
            AttemptInfo(f"up/{MODEL}", "up", MODEL, "first", "error", 503, "ProviderUnavailable",
                        "overloaded", 0.05, started=0.0),
            AttemptInfo(f"up/{MODEL}", "up", MODEL, "retry", latency_s=0.2, started=0.05),
        ]  # fmt: skip
        ctx = RequestContext("chat", request, options, route, info, False, 0.0, now + i * 1e-4)
        items.append((ctx, Outcome(response=completion, completed=True)))
    return items


async def absorb(args: argparse.Namespace, port: int, folder: Path) -> bool:
    checks = []
    for label, rate, seconds in (("paced", 10_000, args.absorb_seconds), ("flat out", None, 0)):
        if rate and seconds <= 0:
            continue  # (--absorb-seconds 0: no paced run)
        path = folder / f"absorb-{label.replace(' ', '-')}.db"
        config = {
            "providers": {"up": {"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                                 "api_key": "x"}},
            "routes": {"chat": {"targets": [f"up/{MODEL}"]}},
            "logging": {"store": f"sqlite:///{path}", "writer": args.writer},
            "telemetry": {"enabled": False},
        }  # fmt: skip
        target = llmroute.AsyncRouter(config)
        recorder = target._recorder
        n = int(rate * seconds) if rate else 100_000
        if rate is None:
            recorder._queue_size = n  # measure the drain, not the queue bound
        items = synthetic(target, n)
        began = time.perf_counter()
        for i, (ctx, outcome) in enumerate(items):
            await recorder.after(ctx, outcome)
            if rate and i % 100 == 99:  # pace in steps of 100 records
                await asyncio.sleep(max(0.0, began + (i + 1) / rate - time.perf_counter()))
        fed = time.perf_counter() - began
        await target.flush()
        took = time.perf_counter() - began
        status = target.recording
        await target.aclose()
        stored = len(SqliteStore(path).records())
        print(f"{label}: fed {n} records in {fed:.2f} s ({n / fed:,.0f}/s), all written after "
              f"{took:.2f} s ({n / took:,.0f} records/s); stored {stored}, dropped "
              f"{status.dropped}")  # fmt: skip
        if rate:
            checks.append((f"{rate:,} records/s for {seconds} s: none dropped, all stored",
                           status.dropped == 0 and stored == n))  # fmt: skip
        else:
            checks.append((f"sustained {n / took:,.0f} records/s (>= 10,000)", n / took >= 10_000))
    return report(checks)


def report(checks: list[tuple[str, bool]]) -> bool:
    for text, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for _, ok in checks)


async def main(args: argparse.Namespace) -> int:
    with running_upstream() as port, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"llmroute {llmroute.__version__}, Python {sys.version.split()[0]}")
        ok = await compare(args, port, folder)
        print()
        ok = await absorb(args, port, folder) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--absorb-seconds", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, help="logging.batch_size (default: its own)")
    parser.add_argument(
        "--priced",
        action="store_true",
        help="route to a model genai-prices prices (the log prices each request)",
    )
    parser.add_argument("--writer", choices=("process", "inline"), default="process",
                        help="where the SQLite store's batches are written (logging.writer)")  # fmt: skip
    sys.exit(asyncio.run(main(parser.parse_args())))
