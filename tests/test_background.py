"""`Background`: the tasks the limits and the cache start off the request's path, and their
drain (the router's ``drain()`` and ``aclose()``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from llmroute._tasks import Background

pytestmark = pytest.mark.anyio


async def test_a_drain_with_only_ended_tasks_left_returns_without_a_turn_of_the_loop() -> None:
    # A task that has ended stays held until its done callback runs, on a later turn. On
    # Python 3.12+ awaiting gather() of done tasks gives the loop no turn, so a drain that
    # waited for the set to empty spun for ever; this one must not need that turn.
    background = Background()

    async def nothing() -> None:
        return None

    background.start(nothing())
    await asyncio.sleep(0)  # the task runs and ends; its done callback is queued
    assert len(background) == 1
    turned: list[bool] = []
    asyncio.get_running_loop().call_soon(turned.append, True)
    await background.drain()
    assert not turned  # returned before the loop's next turn: it did not wait for the callback
    await asyncio.sleep(0)
    assert turned and len(background) == 0


async def test_a_drain_waits_for_running_tasks_and_those_started_meanwhile() -> None:
    background = Background()
    done: list[str] = []

    async def later(name: str, seconds: float, then: str | None = None) -> None:
        await asyncio.sleep(seconds)
        if then is not None:  # starts more work while the drain waits
            background.start(later(then, 0.02))
        done.append(name)

    background.start(later("first", 0.01, then="second"))
    background.start(later("third", 0.005))
    await background.drain()
    assert sorted(done) == ["first", "second", "third"]


async def test_a_drain_raises_what_a_task_raised() -> None:
    background = Background()

    async def broken() -> None:
        await asyncio.sleep(0.001)
        raise LookupError("lost")

    background.start(broken())
    with pytest.raises(LookupError, match="lost"):
        await background.drain()
    await background.drain()  # nothing left running


def test_draining_just_after_a_task_ended_returns_every_time() -> None:
    # The router's aclose() drains the budget's spend records; with one that had just ended,
    # that spun at full CPU on Python 3.12+ (in a process of its own here: a loop that never
    # yields cannot be cancelled, only killed).
    script = textwrap.dedent(
        """
        import asyncio
        from llmroute._tasks import Background

        async def main():
            background = Background()
            async def record():
                return None
            for _ in range(20):
                background.start(record())
                await asyncio.sleep(0)
                await background.drain()
            print("drained")

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "drained"
