"""Routers release what they hold as the SDK's clients do: unclosed, dropped, closed twice.

Each script runs in its own interpreter with every warning an error, against the
loopback upstream (real aiohttp sessions, real sockets), and must say nothing on
stderr: aiohttp reports an unclosed session from its ``__del__``, asyncio a task
destroyed while pending from its exception handler, both on stderr.
"""

from __future__ import annotations

import gc
import os
import sys
import textwrap
import threading

import anyio
import openai
import pytest

from _upstream import Upstream
from llmroute import AsyncRouter, Router

pytestmark = pytest.mark.anyio

HI = [{"role": "user", "content": "hi"}]

PRELUDE = """
import asyncio, gc, os, sys, threading, time
from llmroute import AsyncRouter, Router
CONFIG = {
    "providers": {"up": {"type": "openai", "base_url": sys.argv[1], "api_key": "k"}},
    "routes": {"chat": {"targets": ["up/up-model"]}},
}
HI = [{"role": "user", "content": "hi"}]
def fds():
    return len(os.listdir("/proc/self/fd"))
def settle(threads, descriptors):
    # a dropped router is closed on the loop thread without waiting: give it a moment
    for _ in range(250):
        gc.collect()
        if threading.active_count() <= threads and fds() <= descriptors:
            break
        time.sleep(0.02)
"""

SCRIPTS = {
    "sync router, never closed": """
        router = Router(CONFIG)
        print(router.chat.completions.create(model="chat", messages=HI).choices[0].message.content)
    """,
    "sync SDK client over a router, never closed": """
        client = Router(CONFIG).openai_client()  # the Router itself is dropped at once
        gc.collect()  # and the client keeps it open
        print(client.chat.completions.create(model="chat", messages=HI).choices[0].message.content)
    """,
    "async router in asyncio.run, never closed": """
        async def main():
            router = AsyncRouter(CONFIG)
            reply = await router.chat.completions.create(model="chat", messages=HI)
            print(reply.choices[0].message.content)
        asyncio.run(main())
    """,
    "async router at module level, used by two asyncio.run": """
        router = AsyncRouter(CONFIG)
        async def main():
            reply = await router.chat.completions.create(model="chat", messages=HI)
            print(reply.choices[0].message.content)
        asyncio.run(main())
        asyncio.run(main())  # the first loop's pool closed with it: a new one opens
    """,
    "async SDK client over a router in asyncio.run, never closed": """
        async def main():
            client = AsyncRouter(CONFIG).openai_client()
            reply = await client.chat.completions.create(model="chat", messages=HI)
            print(reply.choices[0].message.content)
        asyncio.run(main())
    """,
    "twenty sync routers dropped": """
        def one(sdk):
            router = Router(CONFIG)
            if sdk:
                router.openai_client().chat.completions.create(model="chat", messages=HI)
            else:
                router.chat.completions.create(model="chat", messages=HI)
        one(True)  # the loop thread starts with the first router and stays
        gc.collect()
        threads, descriptors = threading.active_count(), fds()
        for i in range(20):
            one(sdk=i % 2 == 0)
        settle(threads, descriptors)
        print(threading.active_count() - threads, fds() - descriptors)
    """,
    "twenty async routers dropped in a running loop": """
        async def one(sdk):
            router = AsyncRouter(CONFIG)
            if sdk:
                await router.openai_client().chat.completions.create(model="chat", messages=HI)
            else:
                await router.chat.completions.create(model="chat", messages=HI)
        async def main():
            await one(True)
            gc.collect()
            await asyncio.sleep(0.05)
            threads, descriptors = threading.active_count(), fds()
            for i in range(20):
                await one(sdk=i % 2 == 0)
            for _ in range(250):
                gc.collect()
                await asyncio.sleep(0.02)
                if fds() <= descriptors:
                    break
            print(threading.active_count() - threads, fds() - descriptors)
        asyncio.run(main())
    """,
}


async def run_script(body: str, base_url: str) -> tuple[str, str]:
    code = PRELUDE + textwrap.dedent(body)
    env = dict(os.environ, PYTHONWARNINGS="error")
    done = await anyio.run_process(
        [sys.executable, "-W", "error", "-c", code, base_url], env=env, check=False
    )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stderr
    return stdout, stderr


@pytest.mark.parametrize("name", [name for name in SCRIPTS if not name.startswith("twenty")])
async def test_an_unclosed_router_exits_silently(upstream: Upstream, name: str) -> None:
    stdout, stderr = await run_script(SCRIPTS[name], upstream.base_url)
    assert stderr == ""
    assert "Hello!" in stdout
    assert len(upstream.requests) >= 1


@pytest.mark.parametrize("name", [name for name in SCRIPTS if name.startswith("twenty")])
async def test_dropped_routers_leave_no_threads_or_descriptors(
    upstream: Upstream, name: str
) -> None:
    stdout, stderr = await run_script(SCRIPTS[name], upstream.base_url)
    assert stderr == ""
    threads, descriptors = map(int, stdout.split())
    assert threads == 0
    assert descriptors <= 0  # (the first router's connection may close meanwhile: -1)
    assert len(upstream.requests) == 21


async def test_async_routers_dropped_here_close_their_pools(upstream: Upstream) -> None:
    config = {
        "providers": {"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"}},
    }

    async def one() -> None:
        router = AsyncRouter(config)
        await router.chat.completions.create(model="up/m", messages=HI)

    await one()
    gc.collect()
    await anyio.sleep(0.05)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        await one()
    for _ in range(250):  # the sessions close on this loop, soon after being dropped
        gc.collect()
        await anyio.sleep(0.02)
        if len(os.listdir("/proc/self/fd")) <= before:
            break
    # (an unclosed one would fail this test: aiohttp's warning is an error here)
    assert len(os.listdir("/proc/self/fd")) <= before


def test_blocking_routers_share_one_loop_thread() -> None:
    config = {"providers": {"a": {"type": "mock"}}}
    with Router(config) as first, Router(config) as second:
        first.chat.completions.create(model="a/m", messages=HI)
        second.chat.completions.create(model="a/m", messages=HI)
        loops = [t for t in threading.enumerate() if t.name == "llmroute-loop"]
        assert len(loops) == 1 and loops[0].daemon
    assert loops[0].is_alive()  # closing a router does not stop the others' thread


def test_close_twice_then_use_raises_a_clear_error() -> None:
    router = Router({"providers": {"a": {"type": "mock"}}})
    client = router.openai_client()
    router.chat.completions.create(model="a/m", messages=HI)
    router.close()
    router.close()
    with pytest.raises(RuntimeError, match="router is closed"):
        router.chat.completions.create(model="a/m", messages=HI)
    with pytest.raises(RuntimeError, match="router is closed"):
        router.embeddings.create(model="a/e", input="x")
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="a/m", messages=HI)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="router is closed"):
        router.openai_client()
    assert router.stats()  # what it recorded can still be read
    router.flush()
    router.drain()


def test_a_router_closed_before_any_request_refuses_requests() -> None:
    router = Router({"providers": {"a": {"type": "mock"}}})
    router.close()
    with pytest.raises(RuntimeError, match="router is closed"):
        router.chat.completions.create(model="a/m", messages=HI)


async def test_async_close_twice_then_use_raises_a_clear_error() -> None:
    router = AsyncRouter({"providers": {"a": {"type": "mock"}}})
    await router.chat.completions.create(model="a/m", messages=HI)
    await router.aclose()
    await router.aclose()
    with pytest.raises(RuntimeError, match="router is closed"):
        await router.chat.completions.create(model="a/m", messages=HI)
    with pytest.raises(RuntimeError, match="router is closed"):
        await router.embeddings.create(model="a/e", input="x")
    with pytest.raises(RuntimeError, match="router is closed"):
        router.anthropic_client()
