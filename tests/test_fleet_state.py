"""Provider state shared by a fleet of router processes through a real Redis (issue 19, item 1).

Three processes (tests/_fleet_worker.py) route ``chat`` to ``up/primary`` then
``up/backup``, both on one loopback upstream run here, which counts every
request it receives. What one process learns about the primary (a 429 with
Retry-After, an open circuit) keeps the others off it; half-open probes are
bounded fleet-wide; a Redis outage leaves each process on its own state, said in
``/ready``, and what changed meanwhile is shared when Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from _helpers import end_workers, worker_results
from _upstream import completion_body

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import fleet

WORKER = Path(__file__).with_name("_fleet_worker.py")
PROCESSES = 3


class CountingUpstream:
    """An OpenAI-compatible upstream on loopback, in a thread of its own: it records when
    each request for each model arrived and answers as `behave(model, count, body)` says."""

    def __init__(self) -> None:
        self.hits: dict[str, list[float]] = {"primary": [], "backup": []}
        self.behave: Any = lambda model, count, body: (200, {}, 0.0)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = body["model"]
        self.hits[model].append(time.time())
        status, headers, delay = self.behave(model, len(self.hits[model]), body)
        if delay:
            await asyncio.sleep(delay)
        if status != 200:
            error = {"error": {"message": "scripted", "type": "server_error", "code": None}}
            return web.json_response(error, status=status, headers=headers)
        return web.json_response(completion_body(model=model))

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._answer)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> CountingUpstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as running:
        yield running


def fleet_config(port: int, state: Any, **health: Any) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}/v1"
    return {
        "providers": {"up": {"type": "openai", "base_url": base, "api_key": "k"}},
        "routes": {"chat": {"targets": ["up/primary", "up/backup"], "attempt_timeout": "5s",
                            "retry": {"attempts": 1}}},
        "health": health,
        "state": state,
        "logging": {"store": None},
        "telemetry": {"enabled": False},
    }  # fmt: skip


def start_fleet(jobs: list[dict[str, Any]], folder: Path) -> list[subprocess.Popen[str]]:
    folder.mkdir(exist_ok=True)
    command = [sys.executable, str(WORKER)]
    pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return [
        subprocess.Popen(
            [*command, json.dumps({**job, "folder": str(folder), "parties": len(jobs)})], **pipes
        )
        for job in jobs
    ]


def test_a_retry_after_seen_by_one_process_keeps_the_fleet_off(
    redis_url: str, upstream: CountingUpstream, tmp_path: Path
) -> None:
    retry_after = 4

    def behave(model: str, count: int, body: dict[str, Any]) -> tuple[int, dict[str, str], float]:
        if model == "primary" and count == 1:
            return 429, {"retry-after": str(retry_after)}, 0.0
        return 200, {}, 0.0

    upstream.behave = behave
    config = fleet_config(upstream.port, redis_url)
    jobs = [{"kind": "cooldown", "config": config, "first": i == 0, "seconds": 2.0}
            for i in range(PROCESSES)]  # fmt: skip
    found = worker_results(start_fleet(jobs, tmp_path / "fleet"), timeout=90)
    primary = upstream.hits["primary"]
    during = [t for t in primary if t < primary[0] + retry_after - 0.05]
    learned = [r["learned"] for r in found]
    spread = [f"{(r['learned_at'] - primary[0]) * 1000:.1f} ms" for r in found[1:]]
    print(f"\n429 Retry-After {retry_after}s in one of {PROCESSES} processes: the others knew "
          f"{spread} after the upstream sent it; primary hits during the cooldown: "
          f"{len(during)} (the 429 itself), backup served {len(upstream.hits['backup'])}")  # fmt: skip
    assert all(s is not None and s < 1.0 for s in learned)  # every process learned it
    assert len(during) == 1  # the 429 itself: no process sent the primary anything else
    served = [t for r in found for t in r["served"]]
    assert served and set(served[1:]) == {"up/backup"}  # yet every request was answered
    assert all(len(r["served"]) >= 20 for r in found)
    # the cooldown ended everywhere at once: each process's next request went to the primary
    assert [r["after"] for r in found] == ["up/primary"] * PROCESSES
    assert len(primary) == 1 + PROCESSES


def test_a_circuit_opened_by_one_is_open_in_all_and_probed_once(
    redis_url: str, upstream: CountingUpstream, tmp_path: Path
) -> None:
    failures, probe_takes = 3, 0.6

    def behave(model: str, count: int, body: dict[str, Any]) -> tuple[int, dict[str, str], float]:
        if model == "primary" and count <= failures:
            return 500, {}, 0.0
        if model == "primary" and count == failures + 1:
            return 200, {}, probe_takes  # the half-open probe: slow, then a success
        return 200, {}, 0.0

    upstream.behave = behave
    cooldown = 2.0
    config = fleet_config(upstream.port, {"backend": redis_url}, min_requests=failures,
                          error_threshold=0.5, cooldown=cooldown, half_open_probes=1)  # fmt: skip
    seconds = cooldown + probe_takes + 1.5  # open, the probe, then closed
    jobs = [{"kind": "circuit", "config": config, "first": i == 0, "failures": failures,
             "seconds": seconds} for i in range(PROCESSES)]  # fmt: skip
    found = worker_results(start_fleet(jobs, tmp_path / "fleet"), timeout=90)
    primary = upstream.hits["primary"]
    opened = primary[failures - 1]
    probe = primary[failures]
    after_probe = primary[failures + 1 :]
    learned = [f"{(r['learned_at'] - opened) * 1000:.1f} ms" for r in found[1:]]
    print(f"\ncircuit opened by one of {PROCESSES} processes: the others knew "
          f"{learned} after its last failure; half-open after "
          f"{probe - opened:.2f} s; probes sent while it ran: "
          f"{sum(1 for t in primary if probe <= t < probe + probe_takes)}; leases granted "
          f"{[r['granted'] for r in found]}, denied {[r['denied'] for r in found]}")  # fmt: skip
    assert all(r["learned"] is not None and r["learned"] < 1.0 for r in found)
    # open everywhere: nothing reached the primary until the cooldown had passed
    assert probe - opened >= cooldown - 0.05
    # half-open: one probe for the whole fleet while it ran (each process asked 4 at a time)
    assert not [t for t in after_probe if t < probe + probe_takes - 0.05]
    assert sum(r["granted"] for r in found) == 1
    assert sum(r["denied"] for r in found) >= 1  # the others asked, and were told to wait
    # the probe's success closed the circuit in every process: each sent the primary traffic
    closed_at = probe + probe_takes
    for r in found:
        assert r["state"] == "closed"
        assert any(t > closed_at and target == "up/primary" for t, target in r["served"])


# ---------------------------------------------------------------- Redis lost and back


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A redis-server on `port` (the same port again after a kill: Redis back)."""
    binary = shutil.which("redis-server")
    assert binary is not None  # the redis_server fixture skipped otherwise
    return fleet.start_redis(binary, folder, port)[0]


def wait_files(folder: Path, count: int, processes: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 60
    while not folder.exists() or len(list(folder.iterdir())) < count:
        for process in processes:
            if process.poll() is not None:
                _, err = process.communicate()
                pytest.fail(f"a worker ended early: {err}")
        assert time.monotonic() < deadline, f"waited too long for {folder.name}"
        time.sleep(0.01)


def test_redis_lost_then_back(
    redis_server: str, upstream: CountingUpstream, tmp_path: Path
) -> None:
    def behave(model: str, count: int, body: dict[str, Any]) -> tuple[int, dict[str, str], float]:
        if model == "primary" and body["messages"][0]["content"] == "please 429":
            return 429, {"retry-after": "30"}, 0.0
        return 200, {}, 0.0

    upstream.behave = behave
    port = free_port()
    redis = start_redis(port, tmp_path)
    state = {"backend": f"redis://127.0.0.1:{port}/0", "timeout": "200ms",
             "retry_interval": "300ms", "poll_interval": "500ms"}  # fmt: skip
    config = fleet_config(upstream.port, state)
    jobs = [{"kind": "outage", "config": config, "first": i == 0} for i in range(PROCESSES)]
    folder = tmp_path / "fleet"
    processes = start_fleet(jobs, folder)
    try:
        wait_files(folder / "up", PROCESSES, processes)
        redis.kill()
        redis.wait(10)
        (folder / "kill").touch()
        wait_files(folder / "degraded", PROCESSES, processes)
        redis = start_redis(port, tmp_path)
        (folder / "back").touch()
        found = worker_results(processes, timeout=90)
    finally:
        end_workers(processes)  # a step before worker_results() failed: no worker left running
        redis.kill()
        redis.wait(10)
    first = found[0]
    print(f"\nRedis lost: /ready {first['degraded']}; back: /ready clean after "
          f"{[round(r['healed'], 2) for r in found]} s, the outage's cooldown shared after "
          f"{[round(r['shared'], 2) for r in found]} s")  # fmt: skip
    for r in found:
        assert r["before"] == {"code": 200, "status": "ready"}
        # during the outage: every request answered, /ready still 200 and saying why
        assert r["during"] and all(r["during"])
        degraded = r["degraded"]
        assert degraded["code"] == 200 and degraded["status"] == "ready"
        assert "shared state" in degraded["degraded"][0] and "Redis" in degraded["degraded"][0]
        # one warning for the outage and one for its end, not one per request
        assert (r["lost"], r["back"]) == (1, 1), r["seen"]
        # back: /ready clean, and the cooldown made during the outage is everyone's
        assert r["healed"] is not None
        assert r["shared"] is not None
        assert r["after"] == "up/backup"
        assert r["pending"] == 0
    assert first["local"] is True  # it cooled down on its own while Redis was away
    assert [r["local"] for r in found[1:]] == [False] * (PROCESSES - 1)  # the others could not know
    assert first["published"] >= 1


# ---------------------------------------------------------------- in one process


def test_a_router_whose_redis_is_down_serves_on_its_own_state(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="the redis package is not installed")
    port = free_port()  # nobody listens: connections are refused at once
    config = {
        "providers": {"a": {"type": "mock", "text": "on my own"}},
        "routes": {"chat": {"targets": ["a/m"]}},
        "state": {
            "backend": f"redis://127.0.0.1:{port}/0",
            "timeout": "100ms",
            "retry_interval": "10s",
        },
        "logging": {"store": None},
    }

    async def run() -> tuple[list[str], list[str], Any, float, Any]:
        from llmroute import AsyncRouter

        async with AsyncRouter(config, env={}) as router:
            started = time.monotonic()
            replies = [
                await router.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "hi"}]
                )
                for _ in range(20)
            ]
            took = time.monotonic() - started
            router.cool_down("a/m", 0.01, "by hand")  # a change that cannot be published
            await router.drain()  # returns: Redis failed, the change waits
            status = await router.shared_state()
            return await router.check(), await router.degraded(), status, took, replies

    problems, degraded, status, took, replies = asyncio.run(run())
    assert len(replies) == 20 and took < 1.0  # nothing waited on the Redis that is not there
    assert problems == []  # not a reason to stop serving
    assert len(degraded) == 1 and degraded[0].startswith("shared state: Redis is unavail")
    assert status.connected is False and status.problem is not None
    assert status.pending == 1 and status.published == 0
    assert status.redis_failures >= 1
