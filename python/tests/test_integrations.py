"""Adapters against the real frameworks (installed from PyPI by
scripts/test.sh): each framework calls the tool, and ToolOps caches."""

from __future__ import annotations

import asyncio

import pytest

from toolops import readonly
from toolops.integrations import (crewai_tool, langchain_tool, langgraph_node, llamaindex_tool,
                                  mcp_client_tools, openai_agents_tool, pydantic_ai_toolset,
                                  wrap_langchain_tool, wrap_mcp_server)


def make_search(calls, name):
    def search(query: str, limit: int = 3) -> str:
        """Search the web."""
        calls.append(query)
        return f"{query}:{limit}"

    search.__name__ = search.__qualname__ = name
    return search


def test_langchain_structured_tool_sync_and_async():
    calls = []
    tool = langchain_tool(make_search(calls, "lc_search"), cache_ttl=60)
    assert tool.name == "lc_search"
    assert set(tool.args) == {"query", "limit"}
    assert tool.invoke({"query": "paris"}) == "paris:3"
    assert tool.invoke({"query": "paris", "limit": 3}) == "paris:3"
    assert calls == ["paris"]

    @readonly()
    async def lc_async(query: str) -> str:
        """Search, asynchronously."""
        calls.append(("async", query))
        return query.upper()

    atool = langchain_tool(lc_async)
    assert asyncio.run(atool.ainvoke({"query": "x"})) == "X"
    assert asyncio.run(atool.ainvoke({"query": "x"})) == "X"
    assert calls.count(("async", "x")) == 1


def test_wrapping_an_existing_langchain_tool():
    from langchain_core.tools import StructuredTool

    calls = []
    original = StructuredTool.from_function(make_search(calls, "toolkit_search"))
    wrapped = wrap_langchain_tool(original, cache_ttl=60)
    assert wrapped.name == original.name
    assert wrapped.invoke({"query": "a"}) == "a:3"
    assert wrapped.invoke({"query": "a"}) == "a:3"
    assert asyncio.run(wrapped.ainvoke({"query": "b"})) == "b:3"
    assert calls == ["a", "b"]


def test_langgraph_node_runs_once_per_state():
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        question: str
        answer: str

    runs = []

    def answer(state: State) -> dict:
        runs.append(state["question"])
        return {"answer": "42 for " + state["question"]}

    builder = StateGraph(State)
    builder.add_node("answer", langgraph_node(answer, cache_ttl=60))
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    graph = builder.compile()
    first = graph.invoke({"question": "life", "answer": ""})
    second = graph.invoke({"question": "life", "answer": ""})
    other = graph.invoke({"question": "death", "answer": ""})
    assert first["answer"] == second["answer"] == "42 for life"
    assert other["answer"] == "42 for death"
    assert runs == ["life", "death"]


def test_llamaindex_function_tool():
    calls = []
    tool = llamaindex_tool(make_search(calls, "li_search"))
    assert tool.metadata.name == "li_search"
    assert tool.call(query="x").content == "x:3"
    assert tool.call(query="x").content == "x:3"
    assert calls == ["x"]


def test_crewai_tool():
    calls = []
    tool = crewai_tool(make_search(calls, "crew_search"))
    assert tool.name == "crew_search"
    assert tool.run(query="x") == "x:3"
    assert tool.run(query="x") == "x:3"
    assert calls == ["x"]


def test_openai_agents_function_tool():
    from agents.tool_context import ToolContext

    calls = []
    tool = openai_agents_tool(make_search(calls, "oa_search"))
    assert tool.name == "oa_search"
    assert "query" in tool.params_json_schema["properties"]

    async def invoke(args):
        ctx = ToolContext(context=None, tool_name=tool.name, tool_call_id="call-1",
                          tool_arguments=args)
        return await tool.on_invoke_tool(ctx, args)

    assert asyncio.run(invoke('{"query": "x", "limit": 3}')) == "x:3"
    assert asyncio.run(invoke('{"query": "x", "limit": 3}')) == "x:3"
    assert calls == ["x"]


def test_pydantic_ai_toolset_with_a_real_agent():
    from pydantic_ai import Agent
    from pydantic_ai.models.test import TestModel

    calls = []
    toolset = pydantic_ai_toolset([make_search(calls, "pai_search")], cache_ttl=60)
    agent = Agent(TestModel(), toolsets=[toolset])
    first = agent.run_sync("find something")
    second = agent.run_sync("find something")
    assert "pai_search" in first.output and first.output == second.output
    # The model called the tool twice with the same arguments: one real call.
    assert len(calls) == 1


def _mcp_server():
    from mcp.server.fastmcp import FastMCP
    from mcp.types import ToolAnnotations

    server = FastMCP("weather")
    calls = []

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def forecast(city: str) -> str:
        """Tomorrow's forecast."""
        calls.append(("forecast", city))
        return "sunny in " + city

    @server.tool(annotations=ToolAnnotations(idempotentHint=True))
    def set_alert(city: str) -> str:
        """Sets an alert (idempotent)."""
        calls.append(("set_alert", city))
        return "alert set for " + city

    @server.tool()
    def send_report(to: str) -> str:
        """No annotations: the worst case (a non-idempotent write)."""
        calls.append(("send_report", to))
        return "sent to " + to

    return server, calls


def test_mcp_server_tools_are_wrapped_by_their_annotations():
    server, calls = _mcp_server()
    kinds = wrap_mcp_server(server, read_policy={"cache_ttl": 60},
                            write_policy={"retry_count": 2})
    assert kinds == {"forecast": "readonly", "set_alert": "sideeffect (idempotent)",
                     "send_report": "sideeffect"}

    async def main():
        for _ in range(2):
            await server.call_tool("forecast", {"city": "Paris"})
            await server.call_tool("set_alert", {"city": "Paris"})
            await server.call_tool("send_report", {"to": "ops"})

    asyncio.run(main())
    assert calls.count(("forecast", "Paris")) == 1
    assert calls.count(("set_alert", "Paris")) == 2
    assert calls.count(("send_report", "ops")) == 2


def test_mcp_client_tools_cache_read_only_tools_of_a_server():
    from mcp.shared.memory import create_connected_server_and_client_session

    server, calls = _mcp_server()

    async def main():
        async with create_connected_server_and_client_session(server._mcp_server) as session:
            tools = await mcp_client_tools(session, read_policy={"cache_ttl": 60})
            a = await tools["forecast"](city="Lyon")
            b = await tools["forecast"](city="Lyon")
            await tools["send_report"](to="ops")
            await tools["send_report"](to="ops")
            return a, b

    a, b = asyncio.run(main())
    assert a.content[0].text == b.content[0].text == "sunny in Lyon"
    assert calls.count(("forecast", "Lyon")) == 1
    assert calls.count(("send_report", "ops")) == 2


def test_adapters_refuse_a_policy_for_an_already_wrapped_function():
    @readonly()
    def f(q: str) -> str:
        """Doc."""
        return q

    with pytest.raises(TypeError, match="already wrapped"):
        langchain_tool(f, cache_ttl=5)
