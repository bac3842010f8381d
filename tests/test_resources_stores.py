"""A router's Redis connections and log files are released as its HTTP pools are: when it is
dropped unclosed, when its event loop ends, at exit; quietly.

Each script runs in its own interpreter with every warning an error and tracemalloc on
once llmroute is imported (so a ResourceWarning would name where the resource was opened), against a real
redis-server, with a SQLite request log and a JSON Lines sink, and must say nothing on
stderr: redis-py reports an unclosed connection from its ``__del__``, Python an unclosed
file, asyncio a task destroyed while pending, all on stderr.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

pytestmark = pytest.mark.anyio

PRELUDE = """
import asyncio, gc, os, sys, threading, time, tracemalloc
from llmroute import AsyncRouter, Router
import llmroute._router, redis.asyncio  # imported before tracing starts: it costs seconds
tracemalloc.start(5)
REDIS, FOLDER = sys.argv[1], sys.argv[2]
CONFIG = {
    "providers": {"m": {"type": "mock", "text": "hi"}},
    "routes": {"chat": {"targets": ["m/x"]}},
    "cache": {"backend": REDIS, "ttl": "1h"},
    "rate_limits": {"backend": REDIS, "rules": [{"per": "global", "requests": "1000/min"}]},
    "logging": {"store": f"sqlite:///{FOLDER}/log.db", "sinks": [f"jsonl:///{FOLDER}/log.jsonl"],
                "flush_interval": "10ms"},
}
HI = [{"role": "user", "content": "hi"}]
def fds():
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the listing's own descriptor, closed since
            pass
    return sorted(found)
"""

SCRIPTS = {
    "async router dropped in a running loop": """
        async def one():
            router = AsyncRouter(CONFIG)
            reply = await router.chat.completions.create(model="chat", messages=HI)
            await asyncio.sleep(0.2)  # its record is written (the flush interval is 10ms)
            return reply.llmroute.cache
        async def main():
            before = fds()
            print(await one(), await one())
            for _ in range(100):  # released on this loop, soon after being collected
                gc.collect()
                await asyncio.sleep(0.02)
                if fds() == before:
                    break
            print("left open:", [fd for fd in fds() if fd not in before])
            print("wal:", os.path.exists(f"{FOLDER}/log.db-wal"))
        asyncio.run(main())
    """,
    "async router at module level, used by two asyncio.run": """
        router = AsyncRouter(CONFIG)
        async def main():
            reply = await router.chat.completions.create(model="chat", messages=HI)
            print(reply.llmroute.cache)
            await asyncio.sleep(0.2)
        asyncio.run(main())
        asyncio.run(main())  # Redis closed with the first loop: new connections on this one
    """,
    "async router in asyncio.run, never closed": """
        async def main():
            router = AsyncRouter(CONFIG)
            print((await router.chat.completions.create(model="chat", messages=HI)).llmroute.cache)
        asyncio.run(main())
    """,
    "blocking router, never closed": """
        router = Router(CONFIG)
        print(router.chat.completions.create(model="chat", messages=HI).llmroute.cache)
    """,
}


async def run_script(body: str, redis_url: str, folder: Path) -> tuple[str, str]:
    code = PRELUDE + textwrap.dedent(body)
    env = dict(os.environ, PYTHONWARNINGS="error")
    done = await anyio.run_process(
        [sys.executable, "-W", "error", "-c", code, redis_url, str(folder)],
        env=env,
        check=False,
    )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stderr
    return stdout, stderr


def records(folder: Path) -> int:
    with contextlib.closing(sqlite3.connect(folder / "log.db")) as db, db:
        count: int = db.execute("SELECT count(*) FROM requests").fetchone()[0]
    lines = (folder / "log.jsonl").read_text().splitlines()
    assert len(lines) == count
    return count


@pytest.mark.parametrize("name", list(SCRIPTS))
async def test_redis_and_log_files_are_released_quietly(
    redis_url: str, tmp_path: Path, name: str
) -> None:
    stdout, stderr = await run_script(SCRIPTS[name], redis_url, tmp_path)
    assert stderr == ""
    assert not (tmp_path / "log.db-wal").exists()  # the writer was closed (checkpointed)
    if name == "async router dropped in a running loop":
        assert stdout.splitlines() == ["miss hit", "left open: []", "wal: False"]
        assert records(tmp_path) == 2
    elif name == "async router at module level, used by two asyncio.run":
        assert stdout.split() == ["miss", "hit"]  # the cache's Redis works on the second loop
        assert records(tmp_path) == 2
    else:
        assert stdout.split() == ["miss"]
        assert records(tmp_path) == 1
