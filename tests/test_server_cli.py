"""``llmroute serve`` and ``llmroute new-key``: discovery, safety checks, the real command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmroute import AsyncRouter, ConfigError
from llmroute._config_load import load_config
from llmroute.cli import main
from llmroute.observe import SqliteStore
from llmroute.providers import PRESETS
from llmroute.server.config import ServerConfig
from llmroute.server.keys import hash_key
from llmroute.server.run import (
    DEMO_CONFIG,
    YOUNG_COLLECTION_EVERY,
    ServeSource,
    discover,
    is_loopback,
    load,
    per_worker_state,
    refusals,
    settle_heap,
    summary,
    with_flags,
)

SECRET = "sk-test-do-not-print-0123456789"


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider keys or base-URL overrides leak in from the machine running the tests."""
    for preset in PRESETS.values():
        for name in (preset.key_env, preset.base_url_env):
            if name:
                monkeypatch.delenv(name, raising=False)
    for name in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "AZURE_OPENAI_API_KEY",
                 "AWS_ACCESS_KEY_ID", "AWS_PROFILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- discovery


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert discover(None).kind == "demo"
    assert "no provider keys" in discover(None).reason
    monkeypatch.setenv("GROQ_API_KEY", SECRET)
    assert discover(None).kind == "env"
    (tmp_path / "llmroute.toml").write_text("[routes.r]\ntargets = ['mock/x']\n")
    assert discover(None) == ServeSource("file", Path("llmroute.toml"))
    (tmp_path / "llmroute.yaml").write_text("routes: {r: {targets: [mock/x]}}\n")
    assert discover(None) == ServeSource("file", Path("llmroute.yaml"))
    assert discover("other.json") == ServeSource("file", Path("other.json"))


def test_environment_source_makes_a_chat_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", SECRET)
    monkeypatch.setenv("TOGETHER_API_KEY", SECRET)
    config = load(ServeSource("env"))
    assert [t.key for t in config.routes["chat"].targets] == ["groq/llama-3.1-8b-instant"]


def test_the_demo_config_shows_failover_caching_costs_and_a_log() -> None:
    config = load_config(DEMO_CONFIG)
    assert [t.key for t in config.routes["demo"].targets] == [
        "flaky/demo-model",
        "steady/demo-model",
    ]
    assert config.cache is not None
    assert config.logging is not None and config.logging.store == "sqlite:///llmroute.db"
    assert all(t.price is not None for t in config.routes["demo"].targets)


def test_the_source_survives_the_trip_to_the_workers() -> None:
    for source in (ServeSource("file", Path("/etc/llmroute.yaml")), ServeSource("env"),
                   ServeSource("demo")):  # fmt: skip
        decoded = ServeSource.decode(source.encode())
        assert (decoded.kind, decoded.path) == (source.kind, source.path)
    with pytest.raises(ValueError, match="LLMROUTE_SERVE_SOURCE"):
        ServeSource.decode("ftp://x")


# ---------------------------------------------------------------- safety checks


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
     ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_no_keys_means_loopback_only_unless_allowed() -> None:
    config = load_config({})
    assert refusals(config, ServerConfig()) == []
    (problem,) = refusals(config, ServerConfig(host="0.0.0.0"))
    assert "--allow-unauthenticated" in problem and "'0.0.0.0'" in problem
    assert refusals(config, ServerConfig(host="0.0.0.0", allow_unauthenticated=True)) == []
    keyed = ServerConfig(host="0.0.0.0", keys=[{"name": "k", "key": hash_key("x" * 20)}])
    assert refusals(config, keyed) == []


def test_several_workers_refuse_in_memory_limits() -> None:
    memory = load_config(
        {"rate_limits": {"rules": [{"per": "key", "requests": "10/min"}]},
         "budgets": {"rules": [{"per": "team", "usd": "5/day"}]}, "cache": {}}
    )  # fmt: skip
    assert per_worker_state(memory) == {
        "rate_limits": "memory", "budgets": "memory", "cache": "memory"
    }  # fmt: skip
    (problem,) = refusals(memory, ServerConfig(workers=4))
    assert "rate_limits and budgets" in problem and "--allow-per-worker-limits" in problem
    assert refusals(memory, ServerConfig(workers=4), per_worker_limits=True) == []
    assert refusals(memory, ServerConfig(workers=1)) == []
    shared = load_config(
        {"rate_limits": {"backend": "redis://127.0.0.1:6379/0",
                         "rules": [{"per": "key", "requests": "10/min"}]}, "cache": {}}
    )  # fmt: skip
    assert per_worker_state(shared) == {"rate_limits": "redis", "cache": "memory"}
    assert refusals(shared, ServerConfig(workers=4)) == []  # a per-worker cache is only slower


def test_flags_override_the_file_and_are_validated() -> None:
    server = ServerConfig(host="0.0.0.0", port=9000, workers=2)
    merged = with_flags(server, port=9100, allow_unauthenticated=True, access_log=True)
    assert (merged.host, merged.port, merged.workers) == ("0.0.0.0", 9100, 2)
    assert merged.allow_unauthenticated and merged.access_log
    with pytest.raises(ConfigError, match="--port"):
        with_flags(server, port=70000)


def test_the_summary_names_routes_keys_and_stores_but_never_a_key() -> None:
    from llmroute import AsyncRouter

    plain = "a-plain-key-for-the-summary-test"
    config = {
        "routes": {"chat": {"targets": ["mock/a", "mock/b"]}},
        "cache": {"backend": "redis://127.0.0.1:1/0"},
        "server": {"keys": [{"name": "ci", "key": plain}], "metrics": "key"},
    }
    router = AsyncRouter(config)
    assert router.config.server is not None
    text = summary(ServeSource("file", Path("llmroute.yaml")), router, router.config.server)
    assert "chat" in text and "mock/a -> mock/b" in text
    assert "1 (ci)" in text and plain not in text
    assert "cache in Redis" in text
    assert "http://127.0.0.1:8080/metrics (needs a key)" in text
    assert "http://127.0.0.1:8080/dashboard (keys marked admin: true; no log store)" in text
    demo = summary(
        ServeSource("demo", reason="nothing here"), AsyncRouter(DEMO_CONFIG), ServerConfig()
    )
    assert demo.startswith("DEMO (nothing here)") and "curl" in demo and "llmroute stats" in demo
    assert "http://127.0.0.1:8080/dashboard (clients on this machine only)" in demo


def test_serve_refuses_before_listening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--allow-unauthenticated" in capsys.readouterr().err
    (tmp_path / "llmroute.yaml").write_text(
        "routes: {r: {targets: [mock/x]}}\nrate_limits: [{per: user, requests: 5/min}]\n"
    )
    assert main(["serve", "--workers", "3"]) == 2
    assert "per worker" in capsys.readouterr().err


def test_serve_reports_a_bad_config_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "llmroute.yaml").write_text(
        "routes: {r: {targets: [mock/x]}}\nserver: {keys: [{name: k, key: 'sha256:abc'}]}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert "server.keys.0.key" in err and "64 hexadecimal" in err and "Traceback" not in err


def test_serve_says_which_extra_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    assert main(["serve"]) == 2
    assert "pip install 'llmroute[server]'" in capsys.readouterr().err


def test_new_key_prints_a_key_and_the_config_holding_its_hash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["new-key", "--name", "ci"]) == 0
    out = capsys.readouterr().out
    key = out.split("): ", 1)[1].split("\n", 1)[0]
    assert key.startswith("lr-") and len(key) > 40
    assert f'{{name: ci, key: "{hash_key(key)}"}}' in out


# ---------------------------------------------------------------- the real command


@contextlib.contextmanager
def serving(folder: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``llmroute serve`` in `folder` on a free port; stopped with SIGTERM at the end."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    process = subprocess.Popen(
        [sys.executable, "-m", "llmroute.cli", "serve", "--port", str(port), *args],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{root}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"llmroute serve did not start:\n{process.communicate()[0]}")
            time.sleep(0.05)
        yield root, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(20)
        if process.poll() is None:  # pragma: no cover - only when shutdown hangs
            process.kill()
            process.wait()


def test_serve_runs_the_announced_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(tmp_path) as (root, process):
        client = openai.OpenAI(base_url=f"{root}/v1", api_key="unused", max_retries=0)
        messages: Any = [{"role": "user", "content": "Hello"}]
        first = client.chat.completions.with_raw_response.create(model="demo", messages=messages)
        assert (first.headers["x-llmroute-provider"], first.headers["x-llmroute-attempts"]) == (
            "steady", "2",
        )  # flaky failed, steady answered  # fmt: skip
        assert "Hello from steady" in (first.parse().choices[0].message.content or "")
        again = client.chat.completions.with_raw_response.create(model="demo", messages=messages)
        assert again.headers["x-llmroute-cache"] == "HIT"
        stream = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "stream"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert "Hello from flaky" in text  # flaky has recovered
        metrics = httpx.get(f"{root}/metrics").text
        assert (
            'llmroute_attempts_total{model="demo-model",outcome="error",provider="flaky"' in metrics
        )
        client.close()
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0]
    assert process.returncode == 0
    assert "DEMO (no llmroute.yaml here and no provider keys" in output
    assert "routes:   demo" in output and "/metrics" in output
    assert "Application shutdown complete" in output
    capsys.readouterr()
    # the request log was flushed at shutdown: `llmroute stats` sees every request
    assert main(["stats", str(tmp_path / "llmroute.db"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["requests"] == 3


def test_shutdown_lets_an_in_flight_stream_finish(tmp_path: Path) -> None:
    (tmp_path / "llmroute.yaml").write_text(
        "providers:\n  slow: {type: mock, chunk_delay: 40ms, text: 'a b c d e f g h i j k l m n o p'}\n"
        "routes:\n  slow: {targets: [slow/m]}\n"
    )
    with serving(tmp_path) as (root, process):
        events: list[str] = []
        body = {"model": "slow", "messages": [{"role": "user", "content": "x"}], "stream": True}

        def read() -> None:
            with httpx.stream("POST", f"{root}/v1/chat/completions", json=body, timeout=20) as r:
                events.extend(line for line in r.iter_lines() if line)

        reader = threading.Thread(target=read)
        reader.start()
        while not events:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)  # mid-stream
        reader.join(20)
        output = process.communicate(timeout=20)[0]
    assert events[-1] == "data: [DONE]"
    text = "".join(
        (json.loads(e[6:])["choices"] or [{"delta": {}}])[0]["delta"].get("content") or ""
        for e in events[:-1]
    )
    assert text == "a b c d e f g h i j k l m n o p"
    assert process.returncode == 0  # the stream finished within the shutdown timeout
    assert "Waiting for connections to close" in output


def test_serve_with_several_workers(tmp_path: Path) -> None:
    (tmp_path / "llmroute.yaml").write_text("routes:\n  hello: {targets: [mock/tiny]}\n")
    with serving(tmp_path, "--workers", "2") as (root, process):
        client = openai.OpenAI(base_url=f"{root}/v1", api_key="x", max_retries=0)
        for _ in range(4):
            reply = client.chat.completions.create(
                model="hello", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content
        client.close()
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0
    assert "workers:  2" in output
    assert output.count("Application startup complete") == 2


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_clean_shutdown_exits_0_with_the_logs_flushed(tmp_path: Path, stop: int) -> None:
    store, lines = tmp_path / "log.db", tmp_path / "requests.jsonl"
    (tmp_path / "llmroute.yaml").write_text(
        "routes:\n  hello: {targets: [mock/tiny]}\n"
        f"logging:\n  store: sqlite:///{store}\n  sinks: [jsonl:///{lines}]\n"
        "  flush_interval: 1h\n  batch_size: 1000\n"  # nothing is written before the shutdown
    )
    with serving(tmp_path) as (root, process):
        client = openai.OpenAI(base_url=f"{root}/v1", api_key="x", max_retries=0)
        ids = set()
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(
                model="hello", messages=[{"role": "user", "content": "hi"}]
            )
            ids.add(raw.headers["x-llmroute-request-id"])
        client.close()
        assert not lines.exists() or not lines.read_text()
        process.send_signal(stop)
        output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output
    assert "Traceback" not in output and "exit status" not in output
    assert {r.request_id for r in SqliteStore(store).records()} == ids
    assert {json.loads(line)["request_id"] for line in lines.read_text().splitlines()} == ids


def test_a_drain_that_times_out_exits_1(tmp_path: Path) -> None:
    store = tmp_path / "log.db"
    (tmp_path / "llmroute.yaml").write_text(
        "providers:\n  slow: {type: mock, chunk_delay: 300ms, text: 'a b c d e f g h i j k l'}\n"
        "routes:\n  slow: {targets: [slow/m]}\n"
        f"logging: {{store: 'sqlite:///{store}'}}\n"
        "server: {shutdown_timeout: 1s}\n"
    )
    with serving(tmp_path) as (root, process):
        events: list[str] = []
        body = {"model": "slow", "messages": [{"role": "user", "content": "x"}], "stream": True}

        def read() -> None:
            with (
                contextlib.suppress(httpx.HTTPError),  # the server cuts the stream
                httpx.stream("POST", f"{root}/v1/chat/completions", json=body, timeout=20) as r,
            ):
                events.extend(line for line in r.iter_lines() if line)

        reader = threading.Thread(target=read)
        reader.start()
        while not events:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)  # the stream needs seconds more: longer than 1s
        reader.join(20)
        output = process.communicate(timeout=20)[0]
    assert process.returncode == 1, output
    assert "the shutdown did not let every request finish: exit status 1" in output
    assert "data: [DONE]" not in events
    (record,) = SqliteStore(store).records()  # recorded, as cancelled, and flushed
    assert record.status == "cancelled"


def test_the_serving_process_settles_its_heap_before_traffic() -> None:
    """`settle_heap` (what `llmroute serve` does before uvicorn takes traffic) warms the
    router up, freezes what is alive (a full collection no longer walks it) and collects
    the youngest generation less often; the process's collector is restored after."""
    import gc

    threshold = gc.get_threshold()
    router = AsyncRouter({"routes": {"r": {"targets": ["mock/x"]}}})
    try:
        gc.unfreeze()
        settle_heap(router)
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, *threshold[1:])
        assert "aiohttp" in sys.modules
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        asyncio.run(router.aclose())
