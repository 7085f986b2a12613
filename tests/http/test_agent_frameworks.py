"""Agent frameworks pointed at this service as at OpenAI: the OpenAI Agents SDK (an `Agent` with
a `@function_tool`, its run loop sending the tool's result back, over chat completions and over
the Responses API), LangChain's `ChatOpenAI` (`bind_tools`) and smolagents (`ToolCallingAgent`
with `OpenAIServerModel`). Real HTTP on loopback; the model is scripted (what it writes is fixed),
so what is tested is that each library speaks to the service and gets OpenAI's shapes back (the
same libraries on the real model: tests/test_agent_frameworks_model.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from serving import serve, wait_ready

from agent_server.backends.scripted import ScriptedBackend
from agent_server.core.engine import Engine
from agent_server.core.prompts import Prompt
from agent_server.http.app import create_app
from agent_server.settings import Settings

CALLING = ['Let me check [get_weather({"city": "Paris"})', " never written."]


@pytest.fixture
def served() -> Iterator[tuple[ScriptedBackend, str]]:
    backend = ScriptedBackend()
    engine = Engine(backend, {}, Prompt("chat"))
    for client in serve(create_app(Settings(tools=[]), lambda _: engine)):
        wait_ready(client)
        yield backend, f"{str(client.base_url).rstrip('/')}/v1"


@pytest.mark.parametrize("api", ["chat_completions", "responses"])
def test_an_openai_agents_sdk_agent_calls_its_function_tool_and_answers(served, api):
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    backend, base_url = served
    backend.queue(CALLING, " It is sunny in Paris.")
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city now."""
        asked.append(city)
        return f"sunny in {city}"

    set_tracing_disabled(True)  # no trace upload to OpenAI

    async def run():
        async with AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
            kind = OpenAIChatCompletionsModel if api == "chat_completions" else OpenAIResponsesModel
            model = kind(model="agent-server", openai_client=client)
            tools = [get_weather]
            agent = Agent(name="weather", instructions="Answer briefly.", tools=tools, model=model)
            return await Runner.run(agent, "What is the weather in Paris?")

    result = asyncio.run(run())
    assert asked == ["Paris"]  # the SDK ran the tool with the arguments the model wrote
    assert result.final_output == "It is sunny in Paris."
    assert backend.prompts[1].endswith('[get_weather({"city": "Paris"}) → sunny in Paris]')


def test_langchain_bind_tools_gets_the_tool_call(served):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    backend, base_url = served
    backend.queue(CALLING)

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city now."""
        return f"sunny in {city}"

    llm = ChatOpenAI(model="agent-server", base_url=base_url, api_key="x", max_retries=0)
    reply = llm.bind_tools([get_weather]).invoke("What is the weather in Paris?")
    (call,) = reply.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    assert call["id"].startswith("call_")


def test_a_smolagents_tool_calling_agent_calls_its_tool_then_final_answer(served):
    from smolagents import OpenAIServerModel, ToolCallingAgent, tool

    backend, base_url = served
    # smolagents requires a call every step (`tool_choice: required`): the service opens `[`.
    backend.queue(
        'get_weather({"city": "Paris"})', 'final_answer({"answer": "It is sunny in Paris."})'
    )
    asked: list[str] = []

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city now.

        Args:
            city: the city's name, e.g. 'Paris'
        """
        asked.append(city)
        return f"sunny in {city}"

    model = OpenAIServerModel(model_id="agent-server", api_base=base_url, api_key="x")
    agent = ToolCallingAgent(tools=[get_weather], model=model, max_steps=3, verbosity_level=0)
    assert agent.run("What is the weather in Paris?") == "It is sunny in Paris."
    assert asked == ["Paris"]
    assert "sunny in Paris" in backend.prompts[1]  # the observation reached the model
