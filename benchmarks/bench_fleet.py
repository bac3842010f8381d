"""A fleet of ``llmroute serve`` processes sharing one Redis and one PostgreSQL (issue 19, item 4).

    python benchmarks/bench_fleet.py [--processes 3 --requests 3000 --rounds 3 --concurrency 48]
    python benchmarks/bench_fleet.py --quick

Starts one redis-server (loopback, a temp folder), one PostgreSQL (Debian's
binaries, initialised into a temp folder by ``tests/_postgres.py``, durable
defaults), one loopback upstream in its own process (`fleet.ScriptedUpstream`),
and ``--processes`` ``llmroute serve`` processes (the CLI, each on its own port)
serving one config: rate limits and provider state (``state:``) on the Redis,
the request log on the PostgreSQL (`fleet.fleet_config`). A separate load process
(aiohttp) sends the requests, round-robin across the gateways. Phases:

1. **Limits exact across the fleet**: a rule of ``--limit`` requests a day per
   ``bucket`` property; twice as many requests for one bucket, round-robin. Let
   through must be exactly the limit (and the upstream must have received as many).
   These are the first requests the gateways get, as soon as they are ready: a
   fleet's limits must hold from its first second (they did not, before a
   gateway imported its HTTP engine before it said it was ready).
2. **Throughput**: ``--rounds`` rounds of ``--requests`` non-streamed requests at
   ``--concurrency``, to the first gateway alone and then round-robin to all of
   them, taking turns; requests per second of each, and the fleet's as a multiple
   of one process's (the median of the rounds' ratios). The load process, the
   upstream, Redis and PostgreSQL share the machine's cores with the gateways, so
   on a small machine the factor is bounded by the cores, not by llmroute: each
   round prints the cores every party used (from /proc; ``others``: the rest of
   the machine) and the gateways' CPU time per request, and, as a control, one
   gateway loaded at a fleet member's share of the concurrency.
   Meanwhile **PostgreSQL absorption**: records stored per second during the
   fleet's rounds, the records not yet written when each round ends, and how long
   the writers took to catch up; records dropped by any gateway fail the check.
3. **Retry-After fleet-wide**: the upstream answers the primary's next request
   with 429 and ``Retry-After: --retry-after``; one request to the first gateway
   meets it (and is served by the fallback); once each gateway's ``/api/health``
   shows the cooldown (asked in turn every 2 ms; how long after the 429 is
   printed), every gateway is loaded until just before the cooldown ends. The
   primary's hits during the cooldown: the 429 itself and nothing else. After
   it, each gateway's next request reaches the primary again. Then the same 429
   while every gateway is already loaded (no target: requests already sent, or
   sent before their gateway heard of it through Redis, still reach the
   primary; printed with how late the last was).
4. **Every request in the shared log**: the gateways are stopped, the first with
   SIGINT and the others with SIGTERM (a graceful shutdown: each drains, closes
   its router and flushes its records; exit status 0); then every request id
   the load process received (``x-llmroute-request-id``) must be a row of the
   shared log.

The exit status is 0 only if every check passes.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fleet import (
    BACKUP_MODEL,
    LIMITED_MODEL,
    PRIMARY_MODEL,
    Gateway,
    LoadClient,
    ScriptedUpstream,
    count_rows,
    fleet_config,
    redis_binary,
    running_fleet,
    start_redis,
    stop_process,
    stored_ids,
)


@dataclass
class Settings:
    processes: int = 3
    requests: int = 3000
    rounds: int = 3
    concurrency: int = 48
    limit: int = 500
    retry_after: int = 5
    live: bool = True


@dataclass
class Results:
    """What was measured: `lines` to print, `checks` (name -> passed), `figures` by name."""

    lines: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)

    def say(self, line: str, check: str | None = None, passed: bool = True) -> None:
        if check is not None:
            self.checks[check] = passed
            line += "  PASS" if passed else "  FAIL"
        self.lines.append(line)
        print(line, flush=True)

    def took(self, result: dict[str, Any]) -> dict[str, Any]:
        self.ids += result["ids"]
        return result


class Busy:
    """Cores in use from now until `cores()`: the whole machine's (every process, other
    sessions' too) and each group of `groups`' (a group: process ids, with their threads
    and children), from /proc."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self._groups = groups
        self._start = (time.monotonic(), self._machine(), self._each())

    @staticmethod
    def _machine() -> float:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ticks() -> dict[int, tuple[int, int]]:
        """Every process: (parent, utime + stime)."""
        found = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # ended meanwhile
                found[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
        return found

    def _each(self) -> dict[str, float]:
        ticks = self._ticks()
        each = {}
        for group, pids in self._groups.items():
            members = set(pids) | {p for p, (parent, _) in ticks.items() if parent in pids}
            each[group] = sum(ticks[p][1] for p in members if p in ticks) / os.sysconf("SC_CLK_TCK")
        return each

    def cores(self) -> dict[str, float]:
        """Cores used since the start: ``machine`` and each group's."""
        began, machine, each = self._start
        elapsed = time.monotonic() - began
        now = self._each()
        found = {"machine": (self._machine() - machine) / elapsed}
        found.update({g: (now[g] - each[g]) / elapsed for g in each})
        found["others"] = found["machine"] - sum(found[g] for g in each)
        return found


def _cores(used: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in used.items())


def settle(store: str, expected: int, limit: float = 60) -> float:
    """Wait until the log holds `expected` rows (at most `limit` s): the seconds it took."""
    began = time.monotonic()
    while count_rows(store) < expected and time.monotonic() - began < limit:
        time.sleep(0.02)
    return time.monotonic() - began


def _ok(result: dict[str, Any]) -> int:
    return int(result["statuses"].get("200", 0))


def throughput(fleet: list[Gateway], load: LoadClient, store: str, s: Settings, out: Results,
               pids: dict[str, list[int]]) -> None:  # fmt: skip
    urls = [g.url for g in fleet]
    out.took(load.run(urls, "bench", concurrency=s.concurrency, requests=s.concurrency * 4))
    out.say(f"throughput: {s.rounds} rounds of {s.requests:,} non-streamed requests at "
            f"concurrency {s.concurrency}, 1 gateway then {len(fleet)} round-robin; "
            f"CPU count {os.cpu_count()}")  # fmt: skip
    ratios, singles, fleets, absorbed, lags, catch_ups = [], [], [], [], [], []
    cpu_ms: list[list[float]] = []
    for n in range(s.rounds):
        busy = Busy({"gateways": [g.pid for g in fleet], **pids})
        one = out.took(load.run(urls[:1], "bench", concurrency=s.concurrency, requests=s.requests))
        cores_one = busy.cores()
        # the control: one gateway at a fleet member's share of the concurrency
        share = max(1, s.concurrency // len(fleet))
        busy = Busy({"gateways": [g.pid for g in fleet]})
        third = out.took(load.run(urls[:1], "bench", concurrency=share, requests=s.requests))
        cpu_share = busy.cores()["gateways"] * third["elapsed"] / s.requests * 1000
        settle(store, len(out.ids))  # every earlier record stored: the round counts its own
        before = count_rows(store)
        expected = before + s.requests
        busy = Busy({"gateways": [g.pid for g in fleet], **pids})
        many = out.took(load.run(urls, "bench", concurrency=s.concurrency, requests=s.requests))
        cores_many = busy.cores()
        at_end = count_rows(store)
        catch_ups.append(settle(store, expected))
        for result in (one, many):
            if _ok(result) != s.requests:
                out.say(f"  round {n + 1}: answers {result['statuses']} {result['errors'][:3]}",
                        "throughput: every request answered 200", False)  # fmt: skip
        rate_one, rate_many = s.requests / one["elapsed"], s.requests / many["elapsed"]
        singles.append(rate_one)
        fleets.append(rate_many)
        ratios.append(rate_many / rate_one)
        per_request = [c["gateways"] * r["elapsed"] / s.requests * 1000
                       for c, r in ((cores_one, one), (cores_many, many))]  # fmt: skip
        cpu_ms.append([*per_request, cpu_share])
        absorbed.append((at_end - before) / many["elapsed"])
        lags.append(expected - at_end)
        out.say(
            f"  round {n + 1}: 1 process {rate_one:,.0f} req/s, {len(fleet)} processes "
            f"{rate_many:,.0f} req/s, factor {ratios[-1]:.2f}; PostgreSQL stored "
            f"{absorbed[-1]:,.0f} records/s, {lags[-1]} not yet written at the round's end, "
            f"all written {catch_ups[-1]:.2f} s later"
        )
        out.say(
            f"    cores used, 1 process: {_cores(cores_one)}; gateway CPU "
            f"{per_request[0]:.2f} ms a request"
        )
        out.say(
            f"    cores used, {len(fleet)} processes: {_cores(cores_many)}; gateway CPU "
            f"{per_request[1]:.2f} ms a request"
        )
        out.say(f"    control: 1 process at concurrency {share} (a fleet member's share): "
                f"{s.requests / third['elapsed']:,.0f} req/s, gateway CPU {cpu_share:.2f} ms "
                "a request")  # fmt: skip
    factor = statistics.median(ratios)
    cpu_one = statistics.median(c[0] for c in cpu_ms)
    cpu_many = statistics.median(c[1] for c in cpu_ms)
    cpu_share = statistics.median(c[2] for c in cpu_ms)
    out.figures.update(cpu_one=cpu_one, cpu_many=cpu_many, cpu_share=cpu_share)
    out.figures.update(factor=factor, single=statistics.median(singles),
                       fleet=statistics.median(fleets), absorbed=statistics.median(absorbed),
                       lag=max(lags), catch_up=max(catch_ups))  # fmt: skip
    out.say(f"  scaling: {len(fleet)} processes serve {factor:.2f}x one process's requests/s "
            f"(median of {s.rounds}: {statistics.median(fleets):,.0f} against "
            f"{statistics.median(singles):,.0f}); on {os.cpu_count()} cores shared with the load "
            "process, the upstream, Redis, PostgreSQL and other work, the factor is bounded by "
            f"the cores, not by the fleet. Gateway CPU a request (median): {cpu_one:.2f} ms in "
            f"one process, {cpu_many:.2f} ms spread over {len(fleet)}, {cpu_share:.2f} ms in one "
            "process at a fleet member's share of the concurrency")  # fmt: skip


def absorption(fleet: list[Gateway], s: Settings, out: Results) -> None:
    dropped = {}
    for gateway in fleet:
        for line in gateway.metrics().splitlines():
            if line.startswith(("llmroute_log_records_dropped", "llmroute_log_store_dropped")):
                name, value = line.rsplit(" ", 1)
                dropped[name] = dropped.get(name, 0.0) + float(value)
    lost = int(sum(dropped.values()))
    out.figures["dropped"] = lost
    kept_up = lost == 0 and out.figures["catch_up"] < 5.0
    out.say(f"PostgreSQL absorption under the fleet: {out.figures['absorbed']:,.0f} records/s "
            f"stored (median of the fleet rounds, against {out.figures['fleet']:,.0f} requests/s "
            f"answered); at most {out.figures['lag']} records waiting at a round's end, written "
            f"within {out.figures['catch_up']:.2f} s; records dropped by the gateways "
            f"(/metrics): {lost}", "PostgreSQL kept up (none dropped, caught up within 5 s)",
            kept_up)  # fmt: skip


def limits(fleet: list[Gateway], load: LoadClient, upstream: ScriptedUpstream, s: Settings,
           out: Results) -> None:  # fmt: skip
    urls = [g.url for g in fleet]
    burst = 2 * s.limit
    bucket = {"x-llmroute-property-bucket": "b1"}
    result = out.took(load.run(urls, "limited", concurrency=min(s.concurrency, 60),
                               requests=burst, headers=bucket))  # fmt: skip
    passed, refused = _ok(result), int(result["statuses"].get("429", 0))
    reached = len(upstream.hits(LIMITED_MODEL))
    out.figures.update(let_through=passed, refused=refused, limit_upstream=reached)
    out.say(f"limit {s.limit}/day on one bucket, {burst:,} requests round-robin over "
            f"{len(fleet)} gateways in {result['elapsed']:.2f} s: {passed} let through, "
            f"{refused} refused (429), the upstream received {reached}",
            f"limit exact across the fleet ({s.limit})",
            passed == reached == s.limit and passed + refused == burst)  # fmt: skip


def cooldown(fleet: list[Gateway], load: LoadClient, upstream: ScriptedUpstream, s: Settings,
             out: Results) -> None:  # fmt: skip
    urls = [g.url for g in fleet]
    upstream.script_429(PRIMARY_MODEL, s.retry_after)
    first = out.took(load.run(urls[:1], "cool", concurrency=1, requests=1))
    hits = upstream.hits(PRIMARY_MODEL)
    t0 = hits[0]
    learned = [knows(g, t0, s.retry_after) for g in fleet]  # the others, through Redis
    seconds = t0 + s.retry_after - 0.5 - time.time()
    during = out.took(load.run(urls, "cool", concurrency=4 * len(fleet), seconds=seconds))
    time.sleep(max(0.0, t0 + s.retry_after + 0.3 - time.time()))
    after = out.took(load.run(urls, "cool", concurrency=1, requests=len(fleet)))
    hits = upstream.hits(PRIMARY_MODEL)
    inside = [t for t in hits if t < t0 + s.retry_after - 0.05]
    backup = during["models"].get(BACKUP_MODEL, 0)
    answered = sum(during["statuses"].values())
    out.figures.update(cooldown_hits=len(inside) - 1, backup=backup, during=answered,
                       after=after["models"], learned=learned)  # fmt: skip
    spread = ", ".join("never" if k is None else f"{1000 * k[0]:.0f} ms"
                       + (" (first look)" if k[1] == 1 else f" ({k[1]} looks)") for k in learned)  # fmt: skip
    out.say(f"Retry-After {s.retry_after} s from the upstream to one gateway; each gateway's "
            f"/api/health showed the cooldown {spread} after the upstream sent the 429; "
            f"{answered:,} requests to {len(fleet)} gateways during the cooldown, "
            f"{backup:,} served by the fallback; primary hits during the cooldown after the "
            f"429: {len(inside) - 1}",
            "Retry-After honoured fleet-wide (0 hits after the first)",
            len(inside) == 1 and backup == answered == _ok(during) and None not in learned
            and first["models"] == {BACKUP_MODEL: 1})  # fmt: skip
    out.say(f"  after the cooldown, each gateway's next request went to "
            f"{after['models']}", "cooldown ended fleet-wide",
            after["models"] == {PRIMARY_MODEL: len(fleet)})  # fmt: skip


def knows(gateway: Gateway, since: float, limit: float) -> tuple[float, int] | None:
    """Seconds from `since` until `gateway` shows the primary cooling down (asked every
    few milliseconds) and how many times it was asked; None if not within `limit` seconds."""
    target = f"up/{PRIMARY_MODEL}"
    asked = 0
    while time.time() - since < limit:
        asked += 1
        if gateway.cooldown_s(target):
            return time.time() - since, asked
        time.sleep(0.002)
    return None


def live_cooldown(fleet: list[Gateway], load: LoadClient, upstream: ScriptedUpstream,
                  s: Settings, out: Results) -> None:  # fmt: skip
    """The 429 arrives while every gateway is busy: requests already on their way to the
    primary, and those sent before a gateway has heard of it, still reach it."""
    urls = [g.url for g in fleet]
    found: dict[str, Any] = {}
    lead = 1.0
    running = threading.Thread(target=lambda: found.update(load.run(
        urls, "cool", concurrency=4 * len(fleet), seconds=lead + s.retry_after + 0.5)))  # fmt: skip
    running.start()
    time.sleep(lead)
    upstream.script_429(PRIMARY_MODEL, s.retry_after)
    running.join()
    out.took(found)
    t429 = upstream.refusals(PRIMARY_MODEL)[-1]
    late = [
        t - t429 for t in upstream.hits(PRIMARY_MODEL) if t429 < t < t429 + s.retry_after - 0.05
    ]
    within = sum(1 for t in late if t <= 0.05)
    out.figures.update(live_hits=len(late), live_last=max(late, default=0.0))
    out.say(f"  the same with every gateway already loaded when the 429 arrives: "
            f"{sum(found['statuses'].values()):,} requests in {found['elapsed']:.1f} s; primary "
            f"hits during the cooldown after the 429: {len(late)} ({within} within 50 ms of it, "
            f"the last {1000 * max(late, default=0.0):.0f} ms after it): requests already sent, "
            "or sent before their gateway heard of it through Redis")  # fmt: skip


def shutdown(fleet: list[Gateway], store: str, out: Results) -> None:
    # the first as Ctrl-C would, the others as a container runtime or systemd would
    codes = [g.stop(how=signal.SIGINT if n == 0 else signal.SIGTERM) for n, g in enumerate(fleet)]
    stored = stored_ids(store)
    missing = [i for i in out.ids if i not in stored]
    out.figures["missing_ids"] = missing[:10]
    extra = len(stored - set(out.ids))
    dropped = [g.port for g in fleet if "dropped" in g.output()]
    out.figures.update(exit_codes=codes, answered=len(out.ids), stored=len(stored),
                       missing=len(missing))  # fmt: skip
    out.say(f"shared log after SIGINT to one gateway, SIGTERM to the others (exit status "
            f"{codes}): {len(out.ids):,} responses received, {len(stored):,} rows, "
            f"{len(missing)} missing, "
            f"{extra} rows of requests the load process got no answer for"
            + (f" (gateways on ports {dropped} logged dropped records)" if dropped else ""),
            "every request in the shared log", not missing and codes == [0] * len(fleet)
            and len(set(out.ids)) == len(out.ids))  # fmt: skip


def measure(
    redis_url: str, store_url: str, s: Settings, services: dict[str, list[int]] | None = None
) -> Results:
    """Run every phase on a fleet over these services (`services`: their process ids by
    name, for the cores each uses); the results, printed as they come."""
    out = Results()
    upstream = ScriptedUpstream()
    load = LoadClient()
    try:
        config = fleet_config(upstream.port, redis_url, store_url, s.limit)
        with running_fleet(config, s.processes) as fleet:
            out.say(f"fleet: {s.processes} x llmroute serve on one redis-server and one "
                    f"PostgreSQL; the load from a separate process; CPU count {os.cpu_count()}")  # fmt: skip
            limits(fleet, load, upstream, s, out)  # the fresh gateways' first requests
            if s.rounds:
                pids = {"load": [load.pid], "upstream": [upstream.pid], **(services or {})}
                throughput(fleet, load, store_url, s, out, pids)
                absorption(fleet, s, out)
            cooldown(fleet, load, upstream, s, out)
            if s.live:
                time.sleep(0.5)  # past the first cooldown everywhere (checked by `cooldown`)
                live_cooldown(fleet, load, upstream, s, out)
            shutdown(fleet, store_url, out)
    finally:
        load.close()
        upstream.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000, help="per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--limit", type=int, default=500, help="requests a day per bucket")
    parser.add_argument("--retry-after", type=int, default=5, help="seconds")
    parser.add_argument("--quick", action="store_true",
                        help="--requests 600 --rounds 2 --limit 100 --retry-after 3")  # fmt: skip
    args = parser.parse_args()
    s = Settings(args.processes, args.requests, args.rounds, args.concurrency, args.limit,
                 args.retry_after)  # fmt: skip
    if args.quick:
        s = Settings(args.processes, 600, 2, args.concurrency, 100, 3)
    binary = redis_binary()
    from _postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    if binary is None or bindir is None:
        raise SystemExit(
            "needs redis-server and PostgreSQL: apt-get install redis-server postgresql"
        )
    with tempfile.TemporaryDirectory(prefix="llmroute-redis-") as folder:
        redis, redis_url = start_redis(binary, Path(folder))
        postgres = PostgresServer(bindir, durable=True)
        try:
            postgres.start()
            assert postgres.process is not None
            services = {"postgres": [postgres.process.pid], "redis": [redis.pid]}
            out = measure(redis_url, postgres.create_database(), s, services)
        finally:
            postgres.stop()
            stop_process(redis)
    failed = [name for name, passed in out.checks.items() if not passed]
    print("all checks PASS" if not failed else f"FAIL: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
