"""The big frameworks, unchanged, over the router's in-process SDK clients (issue 14).

langchain-openai, pydantic-ai and openai-agents each run against
``router.openai_client()`` / ``router.http_client()``; the router sends their
requests to a loopback upstream that answers like a model
(`_model_upstream`), through route ``chat``, whose first target fails (503):
every answer below took a failover. instructor's tests run where instructor is
installed (its releases pin ``jiter<0.15``, which the openai SDK in use here
does not allow).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from _model_upstream import PERSON, answer, model_config
from _upstream import Upstream
from llmroute import AsyncRouter, Router
from llmroute.sdk import BASE_URL, PLACEHOLDER_KEY

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class City(BaseModel):
    """A city and its country."""

    name: str
    country: str


class Person(BaseModel):
    name: str
    age: int


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.fixture
async def router(upstream: Upstream) -> AsyncIterator[AsyncRouter]:
    upstream.handler = answer
    async with AsyncRouter(model_config(upstream)) as router:
        yield router


def failed_over(router: AsyncRouter) -> bool:
    """Whether route ``chat``'s first target (which answers 503) was tried."""
    return router.stats()["down/gpt-test"].error_ratio > 0


# ---------------------------------------------------------------- langchain-openai


def _chat_openai(router: AsyncRouter) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model="chat", base_url=BASE_URL, api_key=PLACEHOLDER_KEY,  # type: ignore[arg-type]
        http_async_client=router.http_client(), max_retries=0,
    )  # fmt: skip


async def test_langchain_invoke_and_stream(router: AsyncRouter, upstream: Upstream) -> None:
    llm = _chat_openai(router)
    reply = await llm.ainvoke("hello")
    assert reply.content == "Hello from the model upstream!"
    assert failed_over(router)
    parts = [chunk.content async for chunk in llm.astream("hello")]
    assert len([p for p in parts if p]) > 1
    assert "".join(str(p) for p in parts) == "Hello from the model upstream!"


async def test_langchain_bind_tools_round_trip(router: AsyncRouter) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage

    llm = _chat_openai(router).bind_tools([get_weather])
    messages: list[Any] = [HumanMessage("weather in Paris?")]
    called = await llm.ainvoke(messages)
    call = called.tool_calls[0]
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Paris"})
    messages += [called, ToolMessage(get_weather(**call["args"]), tool_call_id=call["id"])]
    final = await llm.ainvoke(messages)
    assert final.content == "The tool said: sunny in Paris"


async def test_langchain_with_structured_output(router: AsyncRouter) -> None:
    llm = _chat_openai(router)
    for method in ("json_schema", "function_calling"):
        city = await llm.with_structured_output(City, method=method).ainvoke("a city")
        assert city == City(name="Paris", country="Paris")


async def test_langchain_sync_invoke(upstream: Upstream) -> None:
    from langchain_openai import ChatOpenAI

    upstream.handler = answer

    def use() -> Any:
        with Router(model_config(upstream)) as router:
            llm = ChatOpenAI(
                model="chat", base_url=BASE_URL, api_key=PLACEHOLDER_KEY,  # type: ignore[arg-type]
                http_client=router.http_client(), max_retries=0,
            )  # fmt: skip
            return llm.invoke("hello").content

    assert await anyio.to_thread.run_sync(use) == "Hello from the model upstream!"


# ---------------------------------------------------------------- pydantic-ai


def _pydantic_ai_model(router: AsyncRouter) -> Any:
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIChatModel("chat", provider=OpenAIProvider(openai_client=router.openai_client()))


async def test_pydantic_ai_agent_with_a_tool(router: AsyncRouter) -> None:
    from pydantic_ai import Agent

    agent = Agent(_pydantic_ai_model(router), tools=[get_weather])
    result = await agent.run("weather in Paris?")
    assert result.output == "The tool said: sunny in Paris"
    assert failed_over(router)


async def test_pydantic_ai_structured_output_and_run_stream(router: AsyncRouter) -> None:
    from pydantic_ai import Agent

    agent = Agent(_pydantic_ai_model(router), output_type=City)
    assert (await agent.run("a city")).output == City(name="Paris", country="Paris")

    text_agent = Agent(_pydantic_ai_model(router))
    async with text_agent.run_stream("hello") as run:
        parts = [text async for text in run.stream_text(delta=True, debounce_by=None)]
    assert len(parts) > 1
    assert "".join(parts) == "Hello from the model upstream!"


# ---------------------------------------------------------------- openai-agents


@pytest.fixture
def no_tracing() -> Any:
    from agents import set_tracing_disabled

    set_tracing_disabled(True)  # nothing leaves the process
    yield
    set_tracing_disabled(False)


def _agent(router: AsyncRouter) -> Any:
    from agents import Agent, OpenAIChatCompletionsModel, function_tool

    model = OpenAIChatCompletionsModel(model="chat", openai_client=router.openai_client())
    return Agent(name="weather", model=model, tools=[function_tool(get_weather)])


async def test_openai_agents_chat_completions_model_with_a_tool(
    router: AsyncRouter, no_tracing: None
) -> None:
    from agents import Runner

    result = await Runner.run(_agent(router), "weather in Paris?")
    assert result.final_output == "The tool said: sunny in Paris"
    assert failed_over(router)


async def test_openai_agents_run_streamed(router: AsyncRouter, no_tracing: None) -> None:
    from agents import Runner

    run = Runner.run_streamed(_agent(router), "weather in Paris?")
    kinds = [event.type async for event in run.stream_events()]
    assert "raw_response_event" in kinds
    assert run.final_output == "The tool said: sunny in Paris"


# ---------------------------------------------------------------- instructor


def _instructor() -> Any:
    """instructor, which `pip` cannot install beside our openai: every instructor release pins
    jiter<0.15 and openai>=3.4 needs jiter>=0.16. `.ci/run` installs it with --no-deps (it
    works with the newer jiter) and sets LLMROUTE_REQUIRE_INSTRUCTOR=1, so CI never skips."""
    if os.environ.get("LLMROUTE_REQUIRE_INSTRUCTOR") == "1":
        import instructor

        return instructor
    return pytest.importorskip(
        "instructor",
        reason="instructor is not installed: pip install --no-deps instructor (see .ci/run)",
    )


async def test_instructor_tools_and_json_modes_async(router: AsyncRouter) -> None:
    instructor = _instructor()
    client = router.openai_client()
    for mode, model, expected in (
        (instructor.Mode.TOOLS, City, City(name="Paris", country="Paris")),
        (instructor.Mode.JSON, Person, Person(**PERSON)),
    ):
        patched = instructor.from_openai(client, mode=mode)
        got = await patched.chat.completions.create(
            model="chat", response_model=model, messages=[{"role": "user", "content": "?"}]
        )
        assert got.model_dump() == expected.model_dump()  # instructor returns a subclass


async def test_instructor_tools_and_json_modes_sync(upstream: Upstream) -> None:
    instructor = _instructor()
    upstream.handler = answer

    def use() -> list[Any]:
        with Router(model_config(upstream)) as router:
            client = router.openai_client()
            results = []
            for mode, model in ((instructor.Mode.TOOLS, City), (instructor.Mode.JSON, Person)):
                patched = instructor.from_openai(client, mode=mode)
                results.append(
                    patched.chat.completions.create(
                        model="chat",
                        response_model=model,
                        messages=[{"role": "user", "content": "?"}],
                    )
                )
            return results

    city, person = await anyio.to_thread.run_sync(use)
    assert city.model_dump() == {"name": "Paris", "country": "Paris"}
    assert person.model_dump() == PERSON
