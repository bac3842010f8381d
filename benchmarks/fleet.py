"""The machinery of the fleet benchmark (`bench_fleet.py`) and its test (tests/test_fleet_bench.py).

- `start_redis`: a redis-server on a free loopback port, in a temp folder.
- `ScriptedUpstream`: an OpenAI-compatible upstream in its own process that
  records when each request for each model arrived, and can be told to answer
  the next requests for a model with 429 and ``Retry-After`` (its ``/script``
  and ``/hits`` endpoints).
- `fleet_config`: the one configuration every gateway serves.
- `Gateway`: one ``llmroute serve`` (the CLI, a real subprocess) on its own
  port; `stop` sends SIGTERM and waits for the graceful shutdown (exit status
  0: every request in flight finished and the router flushed its records).
- `LoadClient`: a separate process (aiohttp) that sends the requests it is
  asked to, round-robin across the gateways, and returns what each answered.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Gateway", "LoadClient", "ScriptedUpstream", "count_rows", "fleet_config", "free_port",
    "redis_binary", "running_fleet", "start_redis", "stop_process", "stored_ids",
]  # fmt: skip

#: The models of the upstream each route reaches.
THROUGHPUT_MODEL, LIMITED_MODEL = "bench", "limited"
PRIMARY_MODEL, BACKUP_MODEL = "cool-primary", "cool-backup"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def start_redis(binary: str, folder: Path, port: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on loopback (no persistence), on `port` or a free one: the process and
    its URL."""
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.02)
            time.sleep(0.02)


# ---------------------------------------------------------------- the upstream


def _completion(model: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-fleet", "object": "chat.completion", "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": "Hello from the fleet."}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        },
        separators=(",", ":"),
    ).encode()  # fmt: skip


def _serve_upstream(port: int, ready: Any) -> None:
    from aiohttp import web

    hits: dict[str, list[float]] = {}
    refused: dict[str, list[float]] = {}
    #: model -> [answers still to give as 429, their Retry-After]
    scripted: dict[str, list[int]] = {}
    bodies: dict[str, bytes] = {}
    error = json.dumps({"error": {"message": "slow down", "type": "rate_limit_error"}}).encode()

    async def chat(request: web.Request) -> web.Response:
        body = await request.read()
        model = json.loads(body)["model"]
        hits.setdefault(model, []).append(time.time())
        script = scripted.get(model)
        if script and script[0] > 0:
            script[0] -= 1
            refused.setdefault(model, []).append(hits[model][-1])
            return web.Response(
                status=429, body=error, content_type="application/json",
                headers={"retry-after": str(script[1])},
            )  # fmt: skip
        answer = bodies.get(model)
        if answer is None:
            answer = bodies[model] = _completion(model)
        return web.Response(body=answer, content_type="application/json")

    async def script(request: web.Request) -> web.Response:
        asked = await request.json()
        scripted[asked["model"]] = [int(asked["times"]), int(asked["retry_after"])]
        return web.json_response({})

    async def seen(request: web.Request) -> web.Response:
        return web.json_response({"hits": hits, "refused": refused})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/script", script)
    app.router.add_get("/hits", seen)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def _call(url: str, payload: object = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


class ScriptedUpstream:
    """The upstream in a child process (spawn): `port`, `script_429`, `hits`."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.port = free_port()
        ready = ctx.Event()
        self._process = ctx.Process(target=_serve_upstream, args=(self.port, ready), daemon=True)
        self._process.start()
        if not ready.wait(60):
            self.stop()
            raise RuntimeError("the fleet upstream did not start")

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def script_429(self, model: str, retry_after: int, times: int = 1) -> None:
        """Answer the next `times` requests for `model` with 429 and ``Retry-After``."""
        _call(f"http://127.0.0.1:{self.port}/script",
              {"model": model, "retry_after": retry_after, "times": times})  # fmt: skip

    def hits(self, model: str) -> list[float]:
        """When each request for `model` arrived (``time.time()``), in order."""
        found: dict[str, list[float]] = _call(f"http://127.0.0.1:{self.port}/hits")["hits"]
        return found.get(model, [])

    def refusals(self, model: str) -> list[float]:
        """When each request for `model` answered with 429 arrived."""
        found: dict[str, list[float]] = _call(f"http://127.0.0.1:{self.port}/hits")["refused"]
        return found.get(model, [])

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)


# ---------------------------------------------------------------- the gateways


def fleet_config(upstream_port: int, redis_url: str, store_url: str, limit: int) -> dict[str, Any]:
    """The configuration of every gateway: three routes on the upstream, rate limits and
    provider state on one Redis, the request log in one PostgreSQL.

    ``bench`` (the throughput phase) has one target; ``limited`` too, and requests carrying
    the property ``bucket`` may pass `limit` times a day per bucket; ``cool`` tries
    ``up/cool-primary`` then ``up/cool-backup``. Every request is also counted by a
    per-route limit too high to refuse anything, so that each one checks Redis as a
    fleet's per-key limits would.
    """
    base = f"http://127.0.0.1:{upstream_port}/v1"
    return {
        "providers": {"up": {"type": "openai", "base_url": base, "api_key": "k"}},
        "routes": {
            "bench": {"targets": [f"up/{THROUGHPUT_MODEL}"]},
            "limited": {"targets": [f"up/{LIMITED_MODEL}"]},
            "cool": {"targets": [f"up/{PRIMARY_MODEL}", f"up/{BACKUP_MODEL}"],
                     "retry": {"attempts": 1}},
        },
        "rate_limits": {
            "backend": redis_url,
            "rules": [{"per": "property:bucket", "requests": f"{limit}/day"},
                      {"per": "route", "requests": "10m/min"}],
        },
        "state": {"backend": "rate_limits"},
        "logging": {"store": store_url},
    }  # fmt: skip


@dataclass
class Gateway:
    """One ``llmroute serve`` process of the fleet."""

    config: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return int(self.process.pid)

    def start(self) -> None:
        self.log = self.config.with_name(f"gateway-{self.port}.log")
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llmroute.cli", "serve", "--config", str(self.config),
                 "--port", str(self.port)],
                cwd=self.config.parent, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    def wait_ready(self, timeout: float = 90) -> None:
        """Until ``/ready`` answers 200 (RuntimeError with the gateway's output otherwise)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or not ready (503): asked again below
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llmroute serve did not get ready:\n{self.output()}")
            time.sleep(0.1)

    def cooldown_s(self, target: str) -> float | None:
        """How long `target` cools down for in this gateway (``/api/health``), None if not."""
        with urllib.request.urlopen(f"{self.url}/api/health", timeout=10) as answer:
            health = json.loads(answer.read())
        for found in health["targets"]:
            if found["target"] == target:
                return found["cooldown_remaining_s"]  # type: ignore[no-any-return]
        return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as answer:
            return str(answer.read().decode())

    def stop(self, timeout: float = 60, how: signal.Signals = signal.SIGTERM) -> int:
        """Send `how` (SIGTERM or SIGINT: a graceful shutdown) and wait: the exit status (-9
        if it had to be killed)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None else ""


@contextmanager
def running_fleet(config: dict[str, Any], processes: int) -> Iterator[list[Gateway]]:
    """`processes` gateways serving `config` (one file), ready; killed if still running after."""
    with tempfile.TemporaryDirectory(prefix="llmroute-fleet-") as folder:
        path = Path(folder) / "llmroute.yaml"
        path.write_text(json.dumps(config, indent=1))  # JSON is YAML
        gateways = [Gateway(path) for _ in range(processes)]
        try:
            for gateway in gateways:
                gateway.start()
            for gateway in gateways:
                gateway.wait_ready()
            yield gateways
        finally:
            for gateway in gateways:
                if gateway.process is not None and gateway.process.poll() is None:
                    gateway.process.kill()
                    gateway.process.wait(10)


def count_rows(url: str) -> int:
    """Rows of the shared log's ``requests`` table."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM requests").fetchone()
    return int(row[0]) if row else 0


def stored_ids(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT request_id FROM requests")}


# ---------------------------------------------------------------- the load process


async def _load(job: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    urls: list[str] = [f"{u}/v1/chat/completions" for u in job["urls"]]
    messages = [{"role": "user", "content": "Say hello."}]
    body = json.dumps({"model": job["route"], "max_tokens": 16, "messages": messages}).encode()
    headers = {"content-type": "application/json", **job.get("headers", {})}
    requests: int | None = job.get("requests")
    until = time.monotonic() + job["seconds"] if job.get("seconds") else None
    statuses: dict[str, int] = {}
    models: dict[str, int] = {}
    ids: list[str] = []
    errors: list[str] = []
    sent = 0
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal sent
            while True:
                if requests is not None and sent >= requests:
                    return
                if until is not None and time.monotonic() >= until:
                    return
                url = urls[sent % len(urls)]
                sent += 1
                try:
                    async with session.post(url, data=body, headers=headers) as answer:
                        await answer.read()
                        status = str(answer.status)
                        statuses[status] = statuses.get(status, 0) + 1
                        model = answer.headers.get("x-llmroute-model", "-")
                        models[model] = models.get(model, 0) + 1
                        if "x-llmroute-request-id" in answer.headers:
                            ids.append(answer.headers["x-llmroute-request-id"])
                except aiohttp.ClientError as exc:  # counted: a request without an answer
                    errors.append(f"{type(exc).__name__}: {exc}")
                if job.get("pause"):
                    await asyncio.sleep(job["pause"])

        began = time.monotonic()
        started_at = time.time()
        await asyncio.gather(*(worker() for _ in range(job["concurrency"])))
        elapsed = time.monotonic() - began
    return {"sent": sent, "statuses": statuses, "models": models, "ids": ids, "errors": errors,
            "elapsed": elapsed, "started_at": started_at, "ended_at": time.time()}  # fmt: skip


def _load_process(conn: Any) -> None:
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(asyncio.run(_load(job)))


class LoadClient:
    """The load generator, in its own process: `run` sends one job and returns its result."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_load_process, args=(child,), daemon=True)
        self._process.start()

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def run(
        self,
        urls: list[str],
        route: str,
        *,
        concurrency: int,
        requests: int | None = None,
        seconds: float | None = None,
        headers: dict[str, str] | None = None,
        pause: float = 0.0,
    ) -> dict[str, Any]:
        """Send `requests` requests (or for `seconds`) to `route`, request i to
        ``urls[i % len(urls)]``, `concurrency` at a time: what came back."""
        self._conn.send({"urls": urls, "route": route, "concurrency": concurrency,
                         "requests": requests, "seconds": seconds, "headers": headers or {},
                         "pause": pause})  # fmt: skip
        result: dict[str, Any] = self._conn.recv()
        return result

    def close(self) -> None:
        self._conn.send(None)
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)


def redis_binary() -> str | None:
    return shutil.which("redis-server")
