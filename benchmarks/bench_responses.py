"""A streamed Responses request against the same chat stream, timed in one run (issue 16).

    python benchmarks/bench_responses.py [--chunks 200 --rounds 200 --batch 5]

One `AsyncRouter`, one loopback OpenAI-compatible upstream (`upstream.py`, in its own
process, so its work is not the client's), one ``openai``-type provider set to take
Responses requests translated into chat completions. Each round reads, in turns (the
order alternates round by round), a chat stream of ``--chunks`` content chunks with
``router.chat.completions.create(stream=True)`` and the same upstream stream as a
Responses stream with ``router.responses.create(stream=True)``; then the same two with
the 1-chunk stream the upstream gives model ``bench-short``.

Each sample times ``--batch`` streams of one kind read one after the other. Printed,
from the medians over the rounds (per stream: the CPU time of the thread running the
event loop, which neither the upstream's process nor the router's recording thread
enters, and wall time beside it):

- each kind's time per stream and the events it delivered;
- **extra per event**: the Responses stream's time less the chat stream's, over the
  Responses events it delivered (``response.created`` to ``response.completed``), with
  PASS or FAIL against issue 16's budget of 10 µs;
- the marginal extra per delta: the same difference between the long and the short
  stream over the extra content chunks (what one more delta costs, the per-stream work
  of opening and finishing cancelled out).

Rounds interleave the kinds so a busy machine slows both alike; the verdict is on CPU
time. ``count_instructions.py --kinds stream,responses-stream`` counts the same two
streams' instructions, load-independent.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from upstream import MODEL, SHORT_CHUNKS, SHORT_MODEL, running_upstream

MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
#: Issue 16: a streamed Responses request adds at most this over the chat stream, per event.
BUDGET_US = 10.0
KINDS = ("chat", "responses")


def config(port: int) -> dict[str, Any]:
    return {
        "providers": {
            "up": {
                "type": "openai",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "api_key": "x",
                "responses_api": False,  # a Responses request is translated for it
            },
        },
        "routes": {
            "long": {"targets": [f"up/{MODEL}"]},
            "short": {"targets": [f"up/{SHORT_MODEL}"]},
        },
    }


async def measured(read: Callable[[], Awaitable[int]], batch: int) -> tuple[float, float, int]:
    """(CPU µs, wall µs, items delivered) of one whole stream read, the mean of `batch`."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(batch):
        delivered = await read()
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return cpu * 1e6 / batch, wall * 1e6 / batch, delivered


async def run(
    args: argparse.Namespace, port: int
) -> dict[tuple[str, str], list[tuple[float, float, int]]]:
    from llmroute import AsyncRouter

    samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {
        (kind, route): [] for kind in KINDS for route in ("long", "short")
    }
    async with AsyncRouter(config(port)) as router:

        def reader(kind: str, route: str) -> Callable[[], Awaitable[int]]:
            async def read() -> int:
                count = 0
                if kind == "chat":
                    stream: Any = await router.chat.completions.create(
                        model=route, messages=MESSAGES, stream=True
                    )
                else:
                    stream = await router.responses.create(
                        model=route, input=MESSAGES[0]["content"], store=False, stream=True
                    )
                async for _ in stream:
                    count += 1
                return count

            return read

        readers = {key: reader(*key) for key in samples}
        for _ in range(args.warmup):
            for read in readers.values():
                await read()
        gc.collect()
        keys = list(samples)
        for number in range(args.rounds):
            order = keys if number % 2 == 0 else keys[::-1]
            for key in order:
                samples[key].append(await measured(readers[key], args.batch))
    return samples


def report(
    args: argparse.Namespace, samples: dict[tuple[str, str], list[tuple[float, float, int]]]
) -> None:
    def median(key: tuple[str, str], column: int) -> float:
        return statistics.median(sample[column] for sample in samples[key])

    delivered = {key: values[-1][2] for key, values in samples.items()}
    print(
        f"streamed chat vs streamed Responses (translated), one router, loopback upstream; "
        f"{args.rounds} interleaved rounds, medians"
    )
    print(f"  {'kind':10} {'chunks':>6} {'delivered':>9} {'CPU µs':>9} {'wall µs':>9}")
    for (kind, route), _ in samples.items():
        chunks = args.chunks if route == "long" else SHORT_CHUNKS
        print(
            f"  {kind:10} {chunks:>6} {delivered[kind, route]:>9} "
            f"{median((kind, route), 0):>9.0f} {median((kind, route), 1):>9.0f}"
        )
    events = delivered["responses", "long"]
    for column, name in ((0, "CPU"), (1, "wall")):
        long_extra = median(("responses", "long"), column) - median(("chat", "long"), column)
        short_extra = median(("responses", "short"), column) - median(("chat", "short"), column)
        per_event = long_extra / events
        per_delta = (long_extra - short_extra) / (args.chunks - SHORT_CHUNKS)
        line = (
            f"  {name:4}: extra per event {per_event:6.2f} µs ({long_extra:,.0f} µs over "
            f"{events} events); marginal extra per delta {per_delta:6.2f} µs"
        )
        if column == 0:
            verdict = "PASS" if per_event <= BUDGET_US else "FAIL"
            line += f"   {verdict} (budget {BUDGET_US:.0f} µs per event)"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per stream")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5, help="streams per sample")
    args = parser.parse_args()
    if args.chunks <= SHORT_CHUNKS:
        parser.error(f"--chunks must be more than the short stream's {SHORT_CHUNKS}")
    with running_upstream(chunks=args.chunks) as port:
        samples = asyncio.run(run(args, port))
    report(args, samples)


if __name__ == "__main__":
    main()
