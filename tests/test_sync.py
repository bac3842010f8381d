"""The blocking Router: scripts, threads, running event loops, streams, close, exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import llmroute
from _helpers import HI
from llmroute import ChatStream, Router
from llmroute._loop import BlockingStream
from llmroute.responses.blocking import ResponseEventStream

CONFIG = {
    "providers": {"a": {"type": "mock", "echo": True}},
    "routes": {"chat": {"targets": ["a/m"]}},
}


def ask(router: Router, text: str) -> str:
    reply = router.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": text}]
    )
    return reply.choices[0].message.content or ""


def test_both_blocking_streams_are_one_wrapper() -> None:
    """`ChatStream` and the Responses API's event stream drive their async stream through
    one wrapper (issue 16), each adding only what it reports."""
    for cls in (ChatStream, ResponseEventStream):
        assert issubclass(cls, BlockingStream)
        assert not {"__next__", "close", "llmroute", "__exit__"} & set(vars(cls))


def test_plain_script_use() -> None:
    with Router(CONFIG) as router:
        assert ask(router, "hello") == "hello"
        result = router.embeddings.create(model="mock/e", input="x")
        assert len(result.data) == 1


def test_many_threads_at_once() -> None:
    with Router(CONFIG) as router, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: ask(router, f"t{i}"), range(64)))
    assert answers == [f"t{i}" for i in range(64)]


def test_from_inside_a_running_event_loop() -> None:
    router = Router(CONFIG)

    async def main() -> str:
        # blocking call from async code: runs on llmroute's own loop thread
        return ask(router, "inside")

    try:
        assert asyncio.run(main()) == "inside"
    finally:
        router.close()


def test_while_another_thread_runs_an_event_loop() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with Router(CONFIG) as router:
            assert ask(router, "beside") == "beside"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_stream_iterates_and_closes_early() -> None:
    config = {"providers": {"a": {"type": "mock", "text": "a b c d e f"}}}
    with Router(config) as router:
        stream = router.chat.completions.create(model="a/m", messages=HI, stream=True)
        assert isinstance(stream, llmroute.ChatStream)
        with stream:
            first = [next(stream) for _ in range(3)]
        assert [c.choices[0].delta.content for c in first] == ["", "a ", "b "]
        assert list(stream) == []
        assert stream.llmroute.attempts[-1].outcome == "cancelled"
        full = router.chat.completions.create(model="a/m", messages=HI, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in full) == "a b c d e f"
        assert full.text == "a b c d e f"


def test_errors_cross_the_thread_boundary_unchanged() -> None:
    config = {"providers": {"a": {"type": "mock", "script": [400]}}}
    with Router(config) as router, pytest.raises(llmroute.InvalidRequest):
        router.chat.completions.create(model="a/m", messages=HI)


def test_close_is_idempotent_and_a_closed_router_can_be_left() -> None:
    router = Router(CONFIG)
    assert ask(router, "x") == "x"
    router.close()
    router.close()


def test_script_that_never_closes_its_router_still_exits() -> None:
    code = textwrap.dedent(
        """
        from llmroute import Router
        r = Router({"providers": {"a": {"type": "mock"}}})
        print(r.chat.completions.create(model="a/m", messages=[{"role": "user", "content": "x"}])
              .choices[0].message.content)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "mock provider" in done.stdout
