"""Each agent framework once on the real default model, served on loopback as a framework's
backend is deployed (`AGENT_TOOLS` empty: the framework brings its tools): the OpenAI client, the
OpenAI Agents SDK, LangChain and smolagents each ask the weather in Paris; the model must call
the framework's function with the city, and the function's result must reach the answer. (The
protocol of each, with a scripted model: tests/http/test_agent_frameworks.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import openai
import pytest
from serving import serve, wait_ready

from agent_server.http.app import create_app
from agent_server.settings import Settings

pytestmark = pytest.mark.model

QUESTION = "What is the weather in Paris right now?"
WEATHER = "17 °C and foggy"  # nothing a model would guess: the answer must have read it


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    # The app builds the engine (and closes it) in its lifespan, as `agent-server serve` does.
    for client in serve(create_app(Settings(tools=[]))):
        wait_ready(client, 300)
        yield f"{str(client.base_url).rstrip('/')}/v1"


def weather_of(asked: list[str], city: str) -> str:
    asked.append(city)
    return WEATHER


def test_the_openai_client_round_trip(base_url):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city now.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    messages: list[dict[str, object]] = [{"role": "user", "content": QUESTION}]
    with openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=120) as client:
        first = client.chat.completions.create(
            model="agent-server", messages=messages, tools=[tool]
        )
        (call,) = first.choices[0].message.tool_calls or []
        assert call.function.name == "get_weather"
        assert "Paris" in json.loads(call.function.arguments)["city"]
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": WEATHER},
        ]
        second = client.chat.completions.create(
            model="agent-server", messages=messages, tools=[tool]
        )
    assert "17" in (second.choices[0].message.content or "")


def test_an_openai_agents_sdk_agent(base_url):
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city now."""
        return weather_of(asked, city)

    set_tracing_disabled(True)

    async def run() -> str:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
            model = OpenAIChatCompletionsModel(model="agent-server", openai_client=client)
            agent = Agent(name="weather", tools=[get_weather], model=model)
            result = await Runner.run(agent, QUESTION, max_turns=3)
            return str(result.final_output)

    answer = asyncio.run(run())
    assert any("Paris" in city for city in asked)
    assert "17" in answer


def test_a_langchain_agent_loop(base_url):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    asked: list[str] = []

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city now."""
        return weather_of(asked, city)

    llm = ChatOpenAI(model="agent-server", base_url=base_url, api_key="x", max_retries=0)
    bound = llm.bind_tools([get_weather])
    messages: list[object] = [HumanMessage(QUESTION)]
    reply = bound.invoke(messages)
    (call,) = reply.tool_calls
    messages += [reply, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    answer = bound.invoke(messages)
    assert any("Paris" in city for city in asked)
    assert "17" in str(answer.content)


def test_a_smolagents_tool_calling_agent(base_url):
    """smolagents sends its calls back as text ("Calling tools: [...]") and the result as a user
    message ("Observation: ..."), which the small model reads less well than OpenAI's messages:
    over four questions the result reached the final answer in two (README); at least one must."""
    from smolagents import OpenAIServerModel, ToolCallingAgent, tool

    asked: list[str] = []

    def get_weather(city: str) -> str:
        """The weather in a city now.

        Args:
            city: the city's name, e.g. 'Paris'
        """
        return weather_of(asked, city)

    model = OpenAIServerModel(model_id="agent-server", api_base=base_url, api_key="x")
    cities = ["Paris", "Rome", "Oslo", "London"]
    answers = []
    for city in cities:
        agent = ToolCallingAgent(tools=[tool(get_weather)], model=model, max_steps=4)
        answers.append(str(agent.run(f"What is the weather in {city} right now?")))
    assert all(any(city in a for a in asked) for city in cities)  # each agent ran the tool
    assert any("17" in answer for answer in answers), answers
