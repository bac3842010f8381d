"""The big frameworks, unchanged, on the Responses API over the router (issue 16).

openai-agents with its default model (`OpenAIResponsesModel`), langchain's
``ChatOpenAI(use_responses_api=True)`` and pydantic-ai's `OpenAIResponsesModel`
run against ``router.openai_client()`` (and one through a real gateway). Each
runs on two routes whose first target fails (503), so every answer took a
failover: ``native`` goes on to a target that serves the Responses API itself
(`_responses_upstream`), ``translated`` to the same server as an
OpenAI-compatible service (``responses_api: false``), where llmroute
translates each request into a chat completion and the answer back. Route
``mixed`` serves a run natively until that target dies mid-run. Each
framework's own way of continuing a conversation by ``previous_response_id``
is checked on both kinds of target: what it sent (`Recorded`) and the whole
conversation llmroute rebuilt for the upstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from aiohttp import web
from pydantic import BaseModel

from _gateway import running_gateway
from _model_upstream import PERSON
from _responses_upstream import TEXT
from _responses_upstream import answer as responses_answer
from _upstream import Upstream
from llmroute import AsyncRouter
from llmroute.sdk import BASE_URL, PLACEHOLDER_KEY

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

#: What each route's second target answers plain text with.
TEXTS = {"native": TEXT, "translated": "Hello from the model upstream!"}
#: The path each route's second target is sent to.
PATHS = {"native": "/v1/responses", "translated": "/v1/chat/completions"}
ROUTES = list(TEXTS)


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


def config(upstream: Upstream) -> dict[str, Any]:
    """Routes ``native`` and ``translated``, each failing over from a 503ing target, and
    ``mixed``: the native target, then the translated one."""
    root = upstream.base_url.removesuffix("/v1")
    return {
        "providers": {
            "down": {"type": "openai", "base_url": f"{root}/down/v1", "api_key": "k"},
            "native": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"},
            "compat": {
                "type": "openai",
                "base_url": upstream.base_url,
                "api_key": "k",
                "responses_api": False,
            },
        },
        "routes": {
            "native": {"targets": ["down/gpt-test", "native/gpt-test"], "retry": {"attempts": 1}},
            "translated": {
                "targets": ["down/gpt-test", "compat/gpt-test"],
                "retry": {"attempts": 1},
            },
            "mixed": {"targets": ["native/gpt-test", "compat/gpt-test"], "retry": {"attempts": 1}},
        },
    }


@pytest.fixture
def responses_upstream(upstream: Upstream) -> Upstream:
    async def handler(request: web.Request) -> web.StreamResponse:
        upstream.requests[-1]["__path"] = request.path
        return await responses_answer(request)

    upstream.handler = handler
    return upstream


@pytest.fixture
async def router(responses_upstream: Upstream) -> AsyncIterator[AsyncRouter]:
    async with AsyncRouter(config(responses_upstream)) as router:
        yield router


def served(upstream: Upstream, route: str) -> list[dict[str, Any]]:
    """The requests that reached the route's working target (the 503ing one aside), each
    checked to have gone where the route sends it (Responses natively, else chat)."""
    reached = [r for r in upstream.requests if not r["__path"].startswith("/down/")]
    assert reached and {r["__path"] for r in reached} == {PATHS[route]}
    return reached


class Recorded:
    """An in-process openai client (and its HTTP client, for langchain) that keeps the body of
    every request the framework sends, before llmroute rebuilds anything."""

    def __init__(self, router: AsyncRouter) -> None:
        self.sent: list[dict[str, Any]] = []
        self.http = router.http_client(event_hooks={"request": [self._record]})
        self.openai = openai.AsyncOpenAI(
            base_url=BASE_URL, api_key=PLACEHOLDER_KEY, http_client=self.http, max_retries=0
        )

    async def _record(self, request: httpx2.Request) -> None:
        self.sent.append(json.loads(request.content))

    async def __aenter__(self) -> Recorded:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.openai.close()


def failed_over(router: AsyncRouter) -> bool:
    """Whether a route's first target (which answers 503) was tried."""
    return router.stats()["down/gpt-test"].error_ratio > 0


# ---------------------------------------------------------------- openai-agents


@pytest.fixture
def no_tracing() -> Any:
    from agents import set_tracing_disabled

    set_tracing_disabled(True)  # nothing leaves the process
    yield
    set_tracing_disabled(False)


def _agents_run_config(router: AsyncRouter) -> Any:
    """A run config whose provider is openai-agents' default one, on the in-process client;
    its model for a name is `OpenAIResponsesModel` (the Responses API), as by default."""
    from agents import OpenAIProvider, OpenAIResponsesModel, RunConfig

    provider = OpenAIProvider(openai_client=router.openai_client())
    assert isinstance(provider.get_model("native"), OpenAIResponsesModel)
    return RunConfig(model_provider=provider)


def _weather_agent(route: str) -> Any:
    from agents import Agent, function_tool

    return Agent(name="weather", model=route, tools=[function_tool(get_weather)])


@pytest.mark.parametrize("route", ROUTES)
async def test_openai_agents_default_model_runs_an_agent_with_a_tool(
    router: AsyncRouter, responses_upstream: Upstream, route: str, no_tracing: None
) -> None:
    from agents import Runner

    result = await Runner.run(
        _weather_agent(route), "weather in Paris?", run_config=_agents_run_config(router)
    )
    assert result.final_output == "The tool said: sunny in Paris"
    assert failed_over(router)
    first, second = served(responses_upstream, route)
    if route == "native":
        assert first["tools"][0]["name"] == "get_weather" and first["store"] is False
        (call,) = [i for i in second["input"] if i.get("type") == "function_call"]
        (output,) = [i for i in second["input"] if i.get("type") == "function_call_output"]
        assert (output["call_id"], output["output"]) == (call["call_id"], "sunny in Paris")
    else:
        assert first["tools"][0]["function"]["name"] == "get_weather"
        roles = [m["role"] for m in second["messages"]]
        assert roles == ["user", "assistant", "tool"]
        assert second["messages"][2]["content"] == "sunny in Paris"


@pytest.mark.parametrize("route", ROUTES)
async def test_openai_agents_default_model_run_streamed(
    router: AsyncRouter, responses_upstream: Upstream, route: str, no_tracing: None
) -> None:
    from agents import Runner

    run = Runner.run_streamed(
        _weather_agent(route), "weather in Paris?", run_config=_agents_run_config(router)
    )
    raw: list[str] = []
    items: list[str] = []
    async for event in run.stream_events():
        if event.type == "raw_response_event":
            raw.append(event.data.type)
        elif event.type == "run_item_stream_event":
            items.append(event.name)
    assert run.final_output == "The tool said: sunny in Paris"
    assert items == ["tool_called", "tool_output", "message_output_created"]
    assert raw.count("response.created") == raw.count("response.completed") == 2
    assert "response.function_call_arguments.delta" in raw
    assert "response.output_text.delta" in raw
    assert all(r.get("stream") for r in served(responses_upstream, route))


@pytest.mark.parametrize("route", ROUTES)
async def test_openai_agents_continue_by_previous_response_id(
    router: AsyncRouter, responses_upstream: Upstream, route: str, no_tracing: None
) -> None:
    """openai-agents' server-side conversation (``previous_response_id``): the agent sends
    only what is new, llmroute rebuilds the rest from its own store for either target."""
    from agents import OpenAIProvider, RunConfig, Runner

    async with Recorded(router) as client:
        config = RunConfig(model_provider=OpenAIProvider(openai_client=client.openai))
        agent = _weather_agent(route)
        first = await Runner.run(agent, "weather in Paris?", run_config=config)
        assert first.last_response_id is not None and first.last_response_id.startswith("resp_")
        second = await Runner.run(
            agent, "and tomorrow?", run_config=config, previous_response_id=first.last_response_id
        )
    assert second.final_output == "The tool said: sunny in Paris"
    continued = client.sent[2:]  # the second run: a call of the tool, then the answer
    assert continued[0]["previous_response_id"] == first.last_response_id
    assert continued[0]["input"] == [{"role": "user", "content": "and tomorrow?"}]
    assert [i["type"] for i in continued[1]["input"]] == ["function_call_output"]
    assert continued[1]["previous_response_id"] != first.last_response_id
    last = served(responses_upstream, route)[-1]
    if route == "native":
        texts = [json.dumps(i) for i in last["input"]]
        assert "weather in Paris?" in texts[0] and "and tomorrow?" in "".join(texts)
        assert [i.get("type", "message") for i in last["input"]] == [
            "message", "function_call", "function_call_output", "message", "message",
            "function_call", "function_call_output"]  # fmt: skip
    else:
        roles = [m["role"] for m in last["messages"]]
        assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant", "tool"]
        assert last["messages"][4]["content"] == "and tomorrow?"


@pytest.mark.parametrize("route", ROUTES)
async def test_openai_agents_structured_output(
    router: AsyncRouter, responses_upstream: Upstream, route: str, no_tracing: None
) -> None:
    from agents import Agent, Runner

    agent = Agent(name="cities", model=route, output_type=City)
    result = await Runner.run(agent, "a city", run_config=_agents_run_config(router))
    assert result.final_output == City(name="Paris", country="Paris")
    (sent,) = served(responses_upstream, route)
    if route == "native":
        assert sent["text"]["format"]["type"] == "json_schema"
    else:
        assert sent["response_format"]["json_schema"]["schema"]["title"] == "City"


async def test_openai_agents_reasoning_run_fails_over_mid_run(
    router: AsyncRouter, responses_upstream: Upstream, no_tracing: None
) -> None:
    """A streamed run with reasoning whose native target dies after its first answer: the
    second model call (the tool's output, after OpenAI's encrypted reasoning) goes to the
    translated target, which gets the conversation without OpenAI's reasoning."""
    from agents import Agent, ModelSettings, Runner, function_tool
    from openai.types.shared import Reasoning

    answered = 0

    async def native_dies(request: web.Request) -> web.StreamResponse:
        nonlocal answered
        responses_upstream.requests[-1]["__path"] = request.path
        if request.path == "/v1/responses":
            answered += 1
            if answered > 1:
                error = {"error": {"message": "overloaded", "type": "server_error"}}
                return web.json_response(error, status=503)
        return await responses_answer(request)

    responses_upstream.handler = native_dies
    settings = ModelSettings(reasoning=Reasoning(effort="low", summary="auto"))
    agent = Agent(name="weather", model="mixed", tools=[function_tool(get_weather)],
                  model_settings=settings)  # fmt: skip
    run = Runner.run_streamed(agent, "weather in Paris?", run_config=_agents_run_config(router))
    raw: list[str] = []
    items: list[str] = []
    async for event in run.stream_events():
        if event.type == "raw_response_event":
            raw.append(event.data.type)
        elif event.type == "run_item_stream_event":
            items.append(event.name)
    assert run.final_output == "The tool said: sunny in Paris"
    assert items == ["reasoning_item_created", "tool_called", "tool_output",
                     "message_output_created"]  # fmt: skip
    assert "response.reasoning_summary_text.delta" in raw
    assert raw.count("response.completed") == 2
    paths = [r["__path"] for r in responses_upstream.requests]
    assert paths == ["/v1/responses", "/v1/responses", "/v1/chat/completions"]
    native, failed, translated = responses_upstream.requests
    assert native["reasoning"] == {"effort": "low", "summary": "auto"}
    assert native["include"] == ["reasoning.encrypted_content"]
    assert [i.get("type") for i in failed["input"]] == [
        None, "reasoning", "function_call", "function_call_output"]  # fmt: skip
    assert translated["reasoning_effort"] == "low"
    assert [m["role"] for m in translated["messages"]] == ["user", "assistant", "tool"]
    assert "ENCRYPTED-REASONING" not in json.dumps(translated)  # only OpenAI can read it


# ---------------------------------------------------------------- langchain-openai


def _chat_openai(router: AsyncRouter, route: str) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=route, base_url=BASE_URL, api_key=PLACEHOLDER_KEY,  # type: ignore[arg-type]
        http_async_client=router.http_client(), max_retries=0, use_responses_api=True,
    )  # fmt: skip


@pytest.mark.parametrize("route", ROUTES)
async def test_langchain_responses_invoke_and_stream(
    router: AsyncRouter, responses_upstream: Upstream, route: str
) -> None:
    llm = _chat_openai(router, route)
    reply = await llm.ainvoke("hello")
    assert reply.text == TEXTS[route]
    assert reply.response_metadata["id"].startswith("resp_")
    assert reply.usage_metadata is not None and reply.usage_metadata["input_tokens"] > 0
    assert failed_over(router)
    parts = [chunk.text async for chunk in llm.astream("hello")]
    assert len([p for p in parts if p]) > 1
    assert "".join(parts) == TEXTS[route]
    assert [bool(r.get("stream")) for r in served(responses_upstream, route)] == [False, True]


@pytest.mark.parametrize("route", ROUTES)
async def test_langchain_responses_bind_tools_round_trip(
    router: AsyncRouter, responses_upstream: Upstream, route: str
) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage

    llm = _chat_openai(router, route).bind_tools([get_weather])
    messages: list[Any] = [HumanMessage("weather in Paris?")]
    called = await llm.ainvoke(messages)
    call = called.tool_calls[0]
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Paris"})
    messages += [called, ToolMessage(get_weather(**call["args"]), tool_call_id=call["id"])]
    final = await llm.ainvoke(messages)
    assert final.text == "The tool said: sunny in Paris"
    streamed = [chunk async for chunk in llm.astream(messages[:1])]
    gathered = streamed[0]
    for chunk in streamed[1:]:
        gathered += chunk
    (streamed_call,) = gathered.tool_calls
    assert (streamed_call["name"], streamed_call["args"]) == ("get_weather", {"city": "Paris"})
    requests = served(responses_upstream, route)
    assert len(requests) == 3
    if route == "translated":
        assert [m["role"] for m in requests[1]["messages"]] == ["user", "assistant", "tool"]


@pytest.mark.parametrize("route", ROUTES)
async def test_langchain_responses_with_structured_output(
    router: AsyncRouter, responses_upstream: Upstream, route: str
) -> None:
    llm = _chat_openai(router, route)
    for method in ("json_schema", "function_calling"):
        city = await llm.with_structured_output(City, method=method).ainvoke("a city")
        assert city == City(name="Paris", country="Paris")
    person = await llm.with_structured_output(Person, method="json_mode").ainvoke("a JSON person")
    assert person == Person(**PERSON)
    by_schema, by_tool, by_mode = served(responses_upstream, route)
    if route == "native":
        assert by_schema["text"]["format"]["type"] == "json_schema"
        assert by_tool["tool_choice"]["name"] == "City"
        assert by_mode["text"]["format"] == {"type": "json_object"}
    else:
        assert by_schema["response_format"]["json_schema"]["name"] == "City"
        assert by_tool["tool_choice"]["function"]["name"] == "City"
        assert by_mode["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("route", ROUTES)
async def test_langchain_use_previous_response_id(
    router: AsyncRouter, responses_upstream: Upstream, route: str
) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    async with Recorded(router) as client:
        llm = ChatOpenAI(
            model=route, base_url=BASE_URL, api_key=PLACEHOLDER_KEY,  # type: ignore[arg-type]
            http_async_client=client.http, max_retries=0, use_previous_response_id=True,
        ).bind_tools([get_weather])  # fmt: skip
        messages: list[Any] = [HumanMessage("weather in Paris?")]
        called = await llm.ainvoke(messages)
        call = called.tool_calls[0]
        messages += [called, ToolMessage(get_weather(**call["args"]), tool_call_id=call["id"])]
        answered = await llm.ainvoke(messages)
        messages += [answered, HumanMessage("and tomorrow?")]
        again = await llm.ainvoke(messages)
    assert answered.text == "The tool said: sunny in Paris"
    assert again.tool_calls[0]["name"] == "get_weather"
    assert [r.get("previous_response_id") for r in client.sent] == [
        None, called.response_metadata["id"], answered.response_metadata["id"]]  # fmt: skip
    assert [i.get("type") for i in client.sent[1]["input"]] == ["function_call_output"]
    last = served(responses_upstream, route)[-1]
    if route == "native":
        assert [i.get("type", "message") for i in last["input"]] == [
            "message", "function_call", "function_call_output", "message", "message"]  # fmt: skip
    else:
        roles = [m["role"] for m in last["messages"]]
        assert roles == ["user", "assistant", "tool", "assistant", "user"]


# ---------------------------------------------------------------- pydantic-ai


def _pydantic_ai_model(client: Any, route: str) -> Any:
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIResponsesModel(route, provider=OpenAIProvider(openai_client=client))


@pytest.mark.parametrize("route", ROUTES)
async def test_pydantic_ai_responses_agent_with_a_tool(
    router: AsyncRouter, responses_upstream: Upstream, route: str
) -> None:
    from pydantic_ai import Agent

    agent = Agent(_pydantic_ai_model(router.openai_client(), route), tools=[get_weather])
    result = await agent.run("weather in Paris?")
    assert result.output == "The tool said: sunny in Paris"
    assert result.usage.input_tokens > 0
    assert failed_over(router)
    assert len(served(responses_upstream, route)) == 2


@pytest.mark.parametrize("route", ROUTES)
async def test_pydantic_ai_responses_structured_output_and_run_stream(
    router: AsyncRouter, responses_upstream: Upstream, route: str
) -> None:
    from pydantic_ai import Agent, NativeOutput

    model = _pydantic_ai_model(router.openai_client(), route)
    agent = Agent(model, output_type=City)
    assert (await agent.run("a city")).output == City(name="Paris", country="Paris")
    native_output = Agent(model, output_type=NativeOutput(City))
    assert (await native_output.run("a city")).output == City(name="Paris", country="Paris")

    text_agent = Agent(model)
    async with text_agent.run_stream("hello") as run:
        parts = [text async for text in run.stream_text(delta=True, debounce_by=None)]
    assert len(parts) > 1
    assert "".join(parts) == TEXTS[route]

    tool_agent = Agent(model, tools=[get_weather])
    async with tool_agent.run_stream("weather in Paris?") as run:
        streamed = [text async for text in run.stream_text(delta=True, debounce_by=None)]
    assert "".join(streamed) == "The tool said: sunny in Paris"
    requests = served(responses_upstream, route)
    assert len(requests) == 5 and all(r.get("stream") for r in requests[2:])
    by_tool, by_schema = requests[:2]
    assert "final_result" in json.dumps(by_tool["tools"])
    fmt = by_schema["text"]["format"] if route == "native" else by_schema["response_format"]
    schema = fmt["schema"] if route == "native" else fmt["json_schema"]["schema"]
    assert sorted(schema["properties"]) == ["country", "name"]


@pytest.mark.parametrize("route", ROUTES)
async def test_pydantic_ai_continues_by_previous_response_id_with_reasoning(
    router: AsyncRouter, responses_upstream: Upstream, route: str
) -> None:
    """pydantic-ai's ``openai_previous_response_id='auto'`` with reasoning: a native target's
    reasoning goes back to it (with its encrypted content); a translated one asks for it."""
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.profiles.openai import openai_model_profile
    from pydantic_ai.providers.openai import OpenAIProvider

    settings: Any = {"openai_reasoning_effort": "low", "openai_reasoning_summary": "auto",
                     "openai_previous_response_id": "auto"}  # fmt: skip
    async with Recorded(router) as client:
        model = OpenAIResponsesModel(
            route, provider=OpenAIProvider(openai_client=client.openai),
            profile=openai_model_profile("gpt-5"),
        )  # fmt: skip
        agent = Agent(model, tools=[get_weather], model_settings=settings)
        result = await agent.run("weather in Paris?")
        again = await agent.run("and tomorrow?", message_history=result.all_messages())
    assert result.output == again.output == "The tool said: sunny in Paris"
    ids = [r.get("previous_response_id") for r in client.sent]
    assert ids[0] is None and all(i is not None and i.startswith("resp_") for i in ids[1:])
    assert [i["type"] for i in client.sent[1]["input"]] == ["function_call_output"]
    requests = served(responses_upstream, route)
    if route == "native":
        last = requests[-1]["input"]
        reasoning = [i for i in last if i.get("type") == "reasoning"]
        assert len(reasoning) == 3  # one per answer so far
        assert {r["encrypted_content"] for r in reasoning} == {"ENCRYPTED-REASONING"}
        thinking = [p for m in again.all_messages() for p in getattr(m, "parts", [])
                    if type(p).__name__ == "ThinkingPart"]  # fmt: skip
        assert {p.content for p in thinking} == {"Thinking it over."}
    else:
        assert {r["reasoning_effort"] for r in requests} == {"low"}
        assert len(requests[-1]["messages"]) == 7


# ---------------------------------------------------------------- through the gateway


async def test_frameworks_through_a_real_gateway(
    responses_upstream: Upstream, no_tracing: None
) -> None:
    """The same frameworks over HTTP to ``llmroute serve`` (uvicorn on loopback), streamed
    and not, each route failing over from its 503ing target."""
    from agents import OpenAIProvider, RunConfig, Runner
    from langchain_openai import ChatOpenAI
    from pydantic_ai import Agent

    async with (
        running_gateway(config(responses_upstream)) as gateway,
        gateway.client() as client,
        httpx2.AsyncClient() as http,
    ):
        run_config = RunConfig(model_provider=OpenAIProvider(openai_client=client))
        result = await Runner.run(
            _weather_agent("translated"), "weather in Paris?", run_config=run_config
        )
        assert result.final_output == "The tool said: sunny in Paris"
        run = Runner.run_streamed(_weather_agent("native"), "weather?", run_config=run_config)
        kinds = [e.data.type async for e in run.stream_events() if e.type == "raw_response_event"]
        assert run.final_output == "The tool said: sunny in Paris"
        assert kinds.count("response.output_text.delta") > 1
        agent = Agent(_pydantic_ai_model(client, "native"), output_type=City)
        assert (await agent.run("a city")).output == City(name="Paris", country="Paris")
        llm = ChatOpenAI(
            model="translated", base_url=gateway.base_url, api_key="none",  # type: ignore[arg-type]
            http_async_client=http, max_retries=0, use_responses_api=True,
        )  # fmt: skip
        parts = [chunk.text async for chunk in llm.astream("hello")]
        assert "".join(parts) == TEXTS["translated"] and len([p for p in parts if p]) > 1
    paths = [
        r["__path"] for r in responses_upstream.requests if not r["__path"].startswith("/down")
    ]
    assert paths == ["/v1/chat/completions"] * 2 + ["/v1/responses"] * 3 + ["/v1/chat/completions"]
    assert len(responses_upstream.requests) == 2 * len(paths)  # each after a failover
