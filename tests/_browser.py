"""A headless Chromium driven over the DevTools protocol: just what the dashboard tests need.

`browser()` starts Debian's ``chromium`` (or what ``LLMROUTE_CHROMIUM`` names)
on a fresh profile with the DevTools port on loopback, and yields a `Page`:
navigate, evaluate JavaScript, wait for a condition, take a screenshot. Every
console error and uncaught exception the page raises is kept in
`Page.problems`. Without a browser the test is skipped with the reason, unless
``LLMROUTE_REQUIRE_BROWSER=1`` (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

#: The launch flags that work in containers and keep the browser off the network.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)  # fmt: skip


def find_chromium() -> str | None:
    """The browser to drive: ``LLMROUTE_CHROMIUM``, else chromium on PATH."""
    named = os.environ.get("LLMROUTE_CHROMIUM")
    if named:
        return named
    return next((p for n in ("chromium", "chromium-browser") if (p := shutil.which(n))), None)


def require_chromium() -> str:
    """The browser's path; skips the test when there is none (fails under CI's variable)."""
    found = find_chromium()
    if found is None:
        reason = "no chromium to drive (apt-get install chromium, or set LLMROUTE_CHROMIUM)"
        if os.environ.get("LLMROUTE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LLMROUTE_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return found


class Page:
    """One browser tab over a DevTools websocket."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        #: Console errors and uncaught exceptions, as text.
        self.problems: list[str] = []

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call a DevTools method and return its result (events meanwhile are looked at)."""
        call = next(self.ids)
        self.socket.send(json.dumps({"id": call, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == call:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]  # type: ignore[no-any-return]
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.problems.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.problems.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.problems.append(f"{params['entry'].get('url', '')}: {params['entry']['text']}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll `expression` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {expression}; problems: {self.problems}"
                )
            time.sleep(0.05)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def screenshot(
        self, path: Path, width: int = 1280, height: int = 1600, *, whole: bool = True
    ) -> None:
        """A PNG of the page at `width` (a phone's when under 700): all of it, or (not
        `whole`) its first `height` pixels."""
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 700})  # fmt: skip
        data = self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": whole}
        )
        path.write_bytes(base64.b64decode(data["data"]))


@contextlib.contextmanager
def browser() -> Iterator[Page]:
    """A headless Chromium on a fresh profile, and its first tab; closed afterwards."""
    executable = require_chromium()
    with tempfile.TemporaryDirectory(prefix="llmroute-chromium-") as profile:
        process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: its helpers end with it
        )  # fmt: skip
        try:
            port = _devtools_port(Path(profile), process)
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            with connect(url, max_size=64 * 1024 * 1024, open_timeout=10) as socket:
                page = Page(socket)
                for domain in ("Page", "Runtime", "Log"):
                    page.send(f"{domain}.enable")
                yield page
        finally:
            _end_group(process)


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """End the browser and its helper processes (its process group), and wait until they
    are gone: a helper still writing to the profile would make removing it fail."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - only when it hangs
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)  # any helper of the group left?
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    """The DevTools port the browser chose (it writes it to its profile)."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"chromium exited with {process.returncode} before it was ready")
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            return int(marker.read_text().splitlines()[0])
        time.sleep(0.05)
    raise AssertionError("chromium did not open its DevTools port within 30s")
