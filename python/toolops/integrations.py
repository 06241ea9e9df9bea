"""Framework adapters: ToolOps under the tools of agent frameworks.

A function decorated with ``@readonly`` / ``@sideeffect`` keeps its name,
docstring and signature, so every framework below accepts it as it is; the
helpers here save the boilerplate and wrap tools that the framework (or an
MCP server) built itself. Each framework is imported only when its helper is
used; a missing one raises ImportError naming the package to install.

    from toolops import readonly
    from toolops.integrations import langchain_tool

    @readonly(cache_ttl=600, retry_count=2)
    def web_search(query: str) -> str:
        "Search the web."
        ...

    tool = langchain_tool(web_search)      # a LangChain StructuredTool

A plain (undecorated) function given to a helper is wrapped with
``readonly(**policy)`` first. ``policy`` takes the decorator's arguments.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Iterable

from .codec import PydanticCodec
from .decorators import readonly, sideeffect


def _require(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"this adapter needs {package}: pip install {package}") from e


def _wrapped(fn: Callable, policy: dict) -> Callable:
    """`fn` if ToolOps already wraps it, else readonly(**policy)(fn)."""
    if hasattr(fn, "toolops"):
        if policy:
            raise TypeError(f"{getattr(fn, '__name__', fn)!r} is already wrapped by ToolOps; "
                            "give its policy to the decorator, not to the adapter")
        return fn
    return readonly(**policy)(fn)


# -- LangChain / LangGraph -----------------------------------------------------

def langchain_tool(fn: Callable, *, name: str | None = None, description: str | None = None,
                   **policy: Any) -> Any:
    """A LangChain ``StructuredTool`` that calls `fn` through ToolOps (sync
    or async, as `fn` is)."""
    tools = _require("langchain_core.tools", "langchain-core")
    fn = _wrapped(fn, policy)
    kind = "coroutine" if inspect.iscoroutinefunction(fn) else "func"
    return tools.StructuredTool.from_function(**{kind: fn}, name=name, description=description)


def wrap_langchain_tool(tool: Any, *, side_effect: bool = False, **policy: Any) -> Any:
    """A copy of an existing LangChain tool (a toolkit's, say) whose calls go
    through ToolOps: cached and coalesced on the tool's input, retried and
    guarded. ``side_effect=True`` for tools that write."""
    tools = _require("langchain_core.tools", "langchain-core")
    decorate = sideeffect if side_effect else readonly
    policy.setdefault("name", f"langchain.{tool.name}")

    def run(**kwargs: Any) -> Any:
        return tool.invoke(kwargs)

    async def arun(**kwargs: Any) -> Any:
        return await tool.ainvoke(kwargs)

    return tools.StructuredTool(
        name=tool.name, description=tool.description, args_schema=tool.args_schema,
        func=decorate(**policy)(run), coroutine=decorate(**policy)(arun))


def langgraph_node(fn: Callable, **policy: Any) -> Callable:
    """A LangGraph node whose result is cached per state: the same state (all
    its fields, canonically) gets the earlier update without running the
    node again; concurrent runs with one state share one run."""
    return _wrapped(fn, policy)


# -- LlamaIndex, CrewAI, OpenAI Agents, Pydantic AI ----------------------------

def llamaindex_tool(fn: Callable, *, name: str | None = None, description: str | None = None,
                    **policy: Any) -> Any:
    """A LlamaIndex ``FunctionTool`` over `fn` through ToolOps."""
    tools = _require("llama_index.core.tools", "llama-index-core")
    fn = _wrapped(fn, policy)
    kind = "async_fn" if inspect.iscoroutinefunction(fn) else "fn"
    return tools.FunctionTool.from_defaults(**{kind: fn}, name=name, description=description)


def crewai_tool(fn: Callable, *, name: str | None = None, **policy: Any) -> Any:
    """A CrewAI tool over `fn` through ToolOps (`fn` needs a docstring, as
    CrewAI asks of every tool)."""
    tools = _require("crewai.tools", "crewai")
    fn = _wrapped(fn, policy)
    return tools.tool(name or fn.__name__)(fn)


def openai_agents_tool(fn: Callable, **policy: Any) -> Any:
    """An OpenAI Agents SDK ``FunctionTool`` over `fn` through ToolOps."""
    agents = _require("agents", "openai-agents")
    return agents.function_tool(_wrapped(fn, policy))


def pydantic_ai_toolset(fns: Iterable[Callable], **policy: Any) -> Any:
    """A Pydantic AI ``FunctionToolset`` of the given functions, each through
    ToolOps."""
    toolsets = _require("pydantic_ai.toolsets", "pydantic-ai-slim")
    return toolsets.FunctionToolset([_wrapped(fn, dict(policy)) for fn in fns])


# -- MCP -----------------------------------------------------------------------

def _mcp_kind(annotations: Any) -> tuple[bool, bool]:
    """(read_only, idempotent) from a tool's annotations, with the MCP
    specification's defaults for hints that are absent: not read-only, not
    idempotent (the worst case)."""
    read_only = bool(getattr(annotations, "readOnlyHint", None) or False)
    idempotent = bool(getattr(annotations, "idempotentHint", None) or False)
    return read_only, read_only or idempotent


def wrap_mcp_server(server: Any, *, read_policy: dict | None = None,
                    write_policy: dict | None = None) -> dict[str, str]:
    """Puts ToolOps under every tool registered on an MCP server built with
    the official SDK (``FastMCP`` in mcp 1.x, ``MCPServer`` in 2.x), in place.

    A tool whose annotations say ``readOnlyHint: true`` becomes
    ``@readonly(**read_policy)``: cached, coalesced, retried. Every other
    tool becomes ``@sideeffect(**write_policy)``: never cached or coalesced,
    and retried only when ``idempotentHint`` is true (with ``retry_count``
    from the write policy). Returns each tool's name and what it became.
    """
    manager = getattr(server, "_tool_manager", None)
    if manager is None or not hasattr(manager, "list_tools"):
        raise TypeError(f"{type(server).__name__} is not an MCP SDK server (FastMCP / MCPServer)")
    kinds: dict[str, str] = {}
    for tool in manager.list_tools():
        read_only, idempotent = _mcp_kind(tool.annotations)
        name = f"mcp.{getattr(server, 'name', 'server')}.{tool.name}"
        # The request context the SDK passes in is no part of a call's key.
        context = [tool.context_kwarg] if getattr(tool, "context_kwarg", None) else []
        if read_only:
            policy = dict(read_policy or {})
            policy["sensitive_params"] = list(policy.get("sensitive_params") or []) + context
            wrapper = readonly(name=name, **policy)(tool.fn)
            kinds[tool.name] = "readonly"
        else:
            policy = dict(write_policy or {})
            if not idempotent:
                policy.pop("retry_count", None)  # Never do a write twice.
            policy["sensitive_params"] = list(policy.get("sensitive_params") or []) + context
            wrapper = sideeffect(name=name, idempotent=idempotent, **policy)(tool.fn)
            kinds[tool.name] = "sideeffect (idempotent)" if idempotent else "sideeffect"
        tool.fn = wrapper
    return kinds


async def mcp_client_tools(session: Any, *, read_policy: dict | None = None,
                           write_policy: dict | None = None) -> dict[str, Callable]:
    """The tools of the MCP server behind a client session, as coroutine
    functions ``await tools["name"](**arguments)`` that return the
    ``CallToolResult``: read-only ones cached and coalesced (a result with
    ``isError`` set is raised as an error, never cached), the others guarded
    and never cached, chosen from each tool's annotations as in
    ``wrap_mcp_server``."""
    types = _require("mcp.types", "mcp")
    listed = await session.list_tools()
    out: dict[str, Callable] = {}
    for tool in listed.tools:
        read_only, idempotent = _mcp_kind(tool.annotations)
        out[tool.name] = _client_tool(session, tool.name, read_only, idempotent, types,
                                      read_policy or {}, write_policy or {})
    return out


class McpToolError(Exception):
    """An MCP tool answered with ``isError``; ``result`` is its CallToolResult."""

    def __init__(self, name: str, result: Any) -> None:
        text = " ".join(getattr(c, "text", "") for c in getattr(result, "content", []) or [])
        super().__init__(f"MCP tool '{name}' failed: {text}".strip())
        self.result = result


def _client_tool(session: Any, name: str, read_only: bool, idempotent: bool, types: Any,
                 read_policy: dict, write_policy: dict) -> Callable:
    async def call(**arguments: Any) -> Any:
        result = await session.call_tool(name, arguments)
        if getattr(result, "isError", False):
            raise McpToolError(name, result)
        return result

    call.__name__ = name
    call.__qualname__ = f"mcp_client.{name}"
    codec = PydanticCodec(types.CallToolResult)
    if read_only:
        return readonly(name=f"mcp-client.{name}", codec=codec, **read_policy)(call)
    policy = dict(write_policy)
    if not idempotent:
        policy.pop("retry_count", None)
    return sideeffect(name=f"mcp-client.{name}", idempotent=idempotent, **policy)(call)
