"""The running `llmroute serve` under hostile input, with its memory and descriptors watched
(issue 15): bodies of millions of ``{}`` (finding 9), unterminated heads (finding 2), and a
fixed budget of hypothesis-generated requests, each of which must get a well-formed HTTP
answer that is not a 500, with the gateway's RSS and open descriptors bounded after."""

from __future__ import annotations

import contextlib
import json
import os
import re
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
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the gateway's RSS from /proc"
)

MiB = 1024 * 1024
CONFIG = """\
providers:
  mock: {type: mock, latency: 1ms}
routes:
  echo: {targets: [mock/m]}
cache: {backend: "memory://", ttl: 10m}
server:
  head_timeout: 2s
"""


class Served:
    """`llmroute serve` in a child process: its port and pid."""

    def __init__(self, port: int, process: subprocess.Popen[str]) -> None:
        self.port = port
        self.process = process
        #: RSS and open descriptors noted before a test.
        self.baseline = (0, 0)

    def rss(self) -> int:
        """The gateway's resident memory, in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None
        return int(match.group(1)) * 1024

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def settle(self, descriptors: int, seconds: float = 3) -> int:
        """The gateway's open descriptors once they are back to `descriptors` (or the time is
        up): closed connections take a moment to be noticed."""
        deadline = time.monotonic() + seconds
        while (now := self.descriptors()) > descriptors and time.monotonic() < deadline:
            time.sleep(0.05)
        return now


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "llmroute.yaml").write_text(CONFIG)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    process = subprocess.Popen(
        [sys.executable, "-m", "llmroute.cli", "serve", "--port", str(port)],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("llmroute serve did not start")
            time.sleep(0.05)
        served = Served(port, process)
        warm = chat_body([{"role": "user", "content": "warm up"}])
        for _ in range(20):  # what every request allocates once, before anything is measured
            assert status_of(exchange(port, request(warm))) == 200
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:  # pragma: no cover - only when shutdown hangs
            process.kill()
            process.wait()


def chat_body(messages: Any, **extra: Any) -> bytes:
    return json.dumps({"model": "echo", "messages": messages, **extra}).encode()


def request(
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
    *,
    method: str = "POST",
    path: str = "/v1/chat/completions",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", "connection: close"]
    lines += [f"{n}: {v}" for n, v in headers or [("content-type", "application/json")]]
    lines.append(f"content-length: {len(body)}")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` on a new connection; all the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(data)
        parts = []
        with contextlib.suppress(ConnectionError):
            while chunk := sock.recv(65536):
                parts.append(chunk)
    return b"".join(parts)


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n", answer)
    assert match is not None, f"not an HTTP response: {answer[:200]!r}"
    return int(match.group(1))


#: An interim answer (``100 Continue`` to ``expect: 100-continue``) before the final one.
INTERIM = re.compile(rb"HTTP/1\.1 1\d\d [^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n")


def well_formed(answer: bytes) -> int:
    """The status of `answer`, checked to be a whole HTTP/1.1 response (head, then a body of
    the announced length) that is not a 500; interim 1xx answers before it are skipped, as
    clients must (RFC 9110 15.2)."""
    while interim := INTERIM.match(answer):
        answer = answer[interim.end() :]
    status = status_of(answer)
    head, sep, body = answer.partition(b"\r\n\r\n")
    assert sep, answer[:300]
    lengths = re.findall(rb"(?im)^content-length: *(\d+)\r?$", head)
    if lengths:
        assert len(body) == int(lengths[0]), answer[:300]
    else:
        assert re.search(rb"(?im)^transfer-encoding: *chunked", head), answer[:300]
    assert status != 500, answer[:600]
    return status


def test_bodies_of_millions_of_empty_objects_leave_the_gateway_small(gateway: Served) -> None:
    """Three 10 MB bodies of ``{}`` at once: each refused before it becomes 3.5 million
    objects (before the bounds: 74 MB to 1.35 GB)."""
    body = b'{"model": "echo", "messages": [' + b",".join([b"{}"] * 3_400_000) + b"]}"
    assert len(body) > 10_000_000
    before = gateway.rss()
    answers: list[bytes] = []

    def send() -> None:
        answers.append(exchange(gateway.port, request(body)))

    # the default limit is 10 MiB: this body is just under it
    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    grown = gateway.rss() - before
    assert [status_of(a) for a in answers] == [413] * 3, [a[:300] for a in answers]
    assert all(b"max_json_values" in a for a in answers)
    print(f"RSS {before / MiB:.0f} MB -> {(before + grown) / MiB:.0f} MB")
    assert grown < 80 * MiB, f"the gateway grew by {grown / MiB:.0f} MB"


def test_unterminated_heads_leave_the_gateway_small(gateway: Served) -> None:
    """Four connections sending 8 MB of one header line each, never finished, without a key
    (before the bounds, four of 50 MB took the gateway from 70 to 270 MB)."""
    before, descriptors = gateway.rss(), gateway.descriptors()
    answers: list[bytes] = []

    def flood() -> None:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            with contextlib.suppress(ConnectionError):
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-a: ")
                for _ in range(128):
                    sock.sendall(b"v" * 65536)
            with contextlib.suppress(ConnectionError):
                answers.append(sock.recv(65536))

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    grown = gateway.rss() - before
    assert len(answers) == 4 and all(status_of(a) == 431 for a in answers if a), answers
    assert grown < 20 * MiB, f"the gateway grew by {grown / MiB:.0f} MB"
    assert gateway.settle(descriptors) <= descriptors


# ---------------------------------------------------------------- fuzzing

_TEXT = st.text(max_size=40)
_NAMES = st.sampled_from(
    ["content-type", "content-length", "content-encoding", "transfer-encoding", "origin",
     "authorization", "x-api-key", "expect", "x-llmroute-user", "x-llmroute-session",
     "x-llmroute-cache", "x-llmroute-cache-ttl", "x-llmroute-timeout", "x-llmroute-property-team",
     "x-llmroute-bogus",
     "x-other"]
) | st.from_regex(r"\A[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,30}\Z")  # fmt: skip
_VALUES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "gzip", "chunked",
     "http://evil.example", "http://localhost:3000", "null", "no-cache, no-store", "1e308",
     "-5s", "100-continue", "", "Bearer x"]
) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)  # fmt: skip
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TEXT, inner, max_size=5),
    max_leaves=20,
)
_CONTENT = _TEXT | st.lists(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "x"]), "text": _TEXT}),
    max_size=3,
)
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "wizard"]),
     "content": _CONTENT | _JSON}
)  # fmt: skip
_CHAT = st.builds(
    lambda model, messages, extra: json.dumps(
        {"model": model, "messages": messages, **extra}
    ).encode(),
    st.sampled_from(["echo", "mock/other", "nope", ""]) | _TEXT,
    st.lists(_MESSAGE, max_size=4) | _JSON,
    st.dictionaries(
        st.sampled_from(["stream", "n", "max_tokens", "temperature", "tools", "llmroute", "x"]),
        _JSON,
        max_size=3,
    ),
)
_BOMBS = st.builds(
    lambda piece, count: b'{"model": "echo", "messages": ' + piece * count,
    st.sampled_from([b"[", b"{}", b'{"a":', b"[{},", b'"\\', b","]),
    st.integers(1, 400_000),
)
_GOOD = st.lists(
    st.fixed_dictionaries({"role": st.just("user"), "content": _TEXT}), min_size=1, max_size=3
).map(chat_body)
_BODIES = (
    _GOOD | _CHAT | _BOMBS | st.binary(max_size=300) | _JSON.map(lambda v: json.dumps(v).encode())
)
_PATHS = st.sampled_from(
    ["/v1/chat/completions"] * 6 + ["/chat/completions", "/v1/messages", "/v1/embeddings",
     "/v1/models", "/v1/models/echo", "/health", "/metrics", "/v1/nope"]
)  # fmt: skip


@pytest.fixture(scope="module")
def fuzzed_gateway(gateway: Served) -> Served:
    """The gateway, with its RSS and open descriptors noted before the fuzz test."""
    gateway.baseline = (gateway.rss(), gateway.descriptors())
    return gateway


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    method=st.sampled_from(["POST"] * 8 + ["GET", "PUT", "OPTIONS"]),
    path=_PATHS,
    headers=st.lists(st.tuples(_NAMES, _VALUES), max_size=6),
    body=_BODIES,
    typed=st.booleans(),
)
@example(  # uvicorn answers 100 Continue first (a flake until interim answers were skipped)
    method="POST", path="/v1/chat/completions", headers=[("expect", "100-continue")],
    body=b"{}", typed=True,
)  # fmt: skip
def test_fuzzed_requests_get_well_formed_answers(
    fuzzed_gateway: Served,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    typed: bool,
) -> None:
    if typed:
        headers = [("content-type", "application/json"), *headers]
    answer = exchange(fuzzed_gateway.port, request(body, headers, method=method, path=path))
    well_formed(answer)


def test_the_fuzzing_left_the_gateway_bounded(fuzzed_gateway: Served) -> None:
    """After the fuzz test (above): bounded growth, no descriptor left open, still serving."""
    before, descriptors = fuzzed_gateway.baseline
    grown = fuzzed_gateway.rss() - before
    print(f"RSS {before / MiB:.0f} MB -> {(before + grown) / MiB:.0f} MB")
    assert grown < 40 * MiB, f"the gateway grew by {grown / MiB:.0f} MB"
    assert fuzzed_gateway.settle(descriptors) <= descriptors
    answer = exchange(fuzzed_gateway.port, request(chat_body([{"role": "user", "content": "x"}])))
    assert status_of(answer) == 200
