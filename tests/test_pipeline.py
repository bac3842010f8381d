"""Pipeline stages: refusing, answering, and seeing every outcome."""

from __future__ import annotations

from typing import Any

import pytest

import llmroute
from _helpers import HI
from llmroute import AsyncRouter
from llmroute.pipeline.stage import Answer, Outcome, RequestContext, Stage

pytestmark = pytest.mark.anyio

CONFIG = {"providers": {"a": {"type": "mock", "text": "live answer"}},
          "routes": {"chat": {"targets": ["a/m"]}}}  # fmt: skip


class Recording(Stage):
    name = "recording"

    def __init__(self, answer: Answer | None = None, refuse: bool = False) -> None:
        self.answer = answer
        self.refuse = refuse
        self.seen: list[tuple[RequestContext, Outcome]] = []

    async def before(self, ctx: RequestContext) -> Answer | None:
        ctx.keep_chunks = True
        if self.refuse:
            raise llmroute.LocalRateLimitExceeded("no", retry_after=1.0)
        return self.answer

    async def after(self, ctx: RequestContext, outcome: Outcome) -> None:
        self.seen.append((ctx, outcome))


def with_stage(stage: Stage) -> AsyncRouter:
    router = AsyncRouter(CONFIG, env={})
    router.add_stage(stage)
    return router


async def test_after_sees_a_live_answer() -> None:
    stage = Recording()
    async with with_stage(stage) as router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
    ((ctx, outcome),) = stage.seen
    assert outcome.response is reply
    assert outcome.completed
    assert outcome.error is None
    assert outcome.answered_by is None
    assert ctx.route.name == "chat"
    assert ctx.info.latency_s is not None


async def test_refusal_calls_no_provider_and_is_seen() -> None:
    stage = Recording(refuse=True)
    async with with_stage(stage) as router:
        with pytest.raises(llmroute.LocalRateLimitExceeded):
            await router.chat.completions.create(model="chat", messages=HI)
        assert router.stats()["a/m"].requests == 0  # nothing sent to the provider
    ((_, outcome),) = stage.seen
    assert isinstance(outcome.error, llmroute.LocalRateLimitExceeded)


async def test_stage_can_answer_a_request() -> None:
    canned = llmroute.ChatCompletion.model_validate(
        {
            "id": "c1",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "canned"},
                    "finish_reason": "stop",
                }
            ],
        }
    )
    stage = Recording(answer=canned)
    async with with_stage(stage) as router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
        assert router.stats()["a/m"].requests == 0  # nothing sent to the provider
    assert reply.choices[0].message.content == "canned"
    assert reply.llmroute.attempts == []
    assert stage.seen[0][1].answered_by == "recording"


def chunk(
    delta: dict[str, Any], finish: str | None = None, **extra: Any
) -> llmroute.ChatCompletionChunk:
    return llmroute.ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
    )


async def test_stage_can_answer_a_stream_with_chunks() -> None:
    usage = {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "re"}),
        chunk({"content": "played"}, "stop"),
        llmroute.ChatCompletionChunk.model_validate(
            {"id": "c", "created": 1, "model": "m", "choices": [], "usage": usage}
        ),
    ]
    stage = Recording(answer=chunks)
    async with with_stage(stage) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        got = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "replayed"
    assert all(c.choices for c in got)  # the usage chunk is hidden: it was not asked for
    assert stream.completed
    ((_, outcome),) = stage.seen
    assert outcome.answered_by == "recording"
    assert outcome.completed


async def test_stream_outcome_carries_the_kept_chunks() -> None:
    stage = Recording()
    async with with_stage(stage) as router:
        stream = await router.chat.completions.create(model="chat", messages=HI, stream=True)
        got = [c async for c in stream]
    ((_, outcome),) = stage.seen
    assert outcome.chunks is not None
    # every chunk received, including the usage chunk the caller did not ask to see
    assert outcome.chunks[:-1] == got
    assert outcome.chunks[-1].choices == []
    assert outcome.chunks[-1].usage is not None
    assert outcome.completed
    assert outcome.error is None


async def test_provider_failure_is_seen_by_after() -> None:
    stage = Recording()
    config = {
        "providers": {"a": {"type": "mock", "script": [400]}},
        "routes": {"chat": {"targets": ["a/m"]}},
    }
    router = AsyncRouter(config, env={})
    router.add_stage(stage)
    async with router:
        with pytest.raises(llmroute.InvalidRequest):
            await router.chat.completions.create(model="chat", messages=HI)
    ((_, outcome),) = stage.seen
    assert isinstance(outcome.error, llmroute.InvalidRequest)


class Broken(Stage):
    name = "broken"

    async def after(self, ctx: RequestContext, outcome: Outcome) -> None:
        raise RuntimeError("the stage's store is down")


async def test_a_failing_stage_does_not_cost_others_their_outcome_or_the_caller_its_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    later = Recording()
    router = AsyncRouter(CONFIG, env={})
    router.add_stage(Broken())
    router.add_stage(later)
    async with router:
        reply = await router.chat.completions.create(model="chat", messages=HI)
    assert reply.choices[0].message.content == "live answer"
    assert len(later.seen) == 1  # the stage after the broken one still ran
    assert router.stage_failures == 1
    assert "stage 'broken' failed" in caplog.text
