"""``llmroute dashboard`` as a user runs it: a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def dashboard_command(store: Path | str, *args: str) -> Iterator[tuple[str, list[str]]]:
    """``llmroute dashboard --store STORE`` until the block ends (then SIGINT); yields the
    root URL once ``/api/health`` answers, and a list that holds its output afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmroute.cli", "dashboard", "--store", str(store),
         "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{root}/api/health", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"llmroute dashboard did not start:\n{process.communicate()[0]}"
                )
            time.sleep(0.05)
        yield root, output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            output.append(process.communicate(timeout=20)[0])
        except subprocess.TimeoutExpired:  # pragma: no cover - only when shutdown hangs
            process.kill()
            output.append(process.communicate()[0])
