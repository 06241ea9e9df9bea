"""The semantic cache from Python: the built-in embedder by default, a
Python callable as embedder, partitions by exact arguments, the guard."""

from __future__ import annotations

import asyncio

import pytest

from toolops import PolicyError, SemanticCache, cache_manager, readonly


def test_the_documented_example_runs_as_written():
    calls = []

    class PaidTool:
        async def call(self, query):
            calls.append(query)
            await asyncio.sleep(0.01)
            return f"answer to {query}"

    paid_tool = PaidTool()

    @readonly(cache_backend="semantic", cache_ttl=3600, retry_count=3)
    async def run_tool(query: str) -> str:
        return await paid_tool.call(query)

    async def main():
        first = await run_tool("How do I reset my password?")
        again = await run_tool("How do I reset my password?")
        return first, again

    first, again = asyncio.run(main())
    assert first == again == "answer to How do I reset my password?"
    assert len(calls) == 1


def test_same_meaning_is_served_and_other_numbers_or_names_are_not():
    calls = []

    @readonly(cache_backend="semantic")
    def weather(query: str) -> str:
        calls.append(query)
        return f"forecast for: {query}"

    assert weather("What is the weather in Paris tomorrow?")
    served = weather("what's the weather in Paris tomorrow")
    assert served == "forecast for: What is the weather in Paris tomorrow?"
    assert weather.stats()["semantic_hit"] == 1
    # Another city, another year: never the Paris answer.
    assert weather("What is the weather in Lyon tomorrow?").endswith("Lyon tomorrow?")
    assert weather("What was the GDP of France in 2008?").endswith("2008?")
    assert weather("What was the GDP of France in 2010?").endswith("2010?")
    assert len(calls) == 4


def test_structured_arguments_partition_the_index():
    calls = []

    @readonly(cache_backend="semantic")
    def search(query: str, lang: str) -> str:
        calls.append((query, lang))
        return f"{lang}: {query}"

    assert search("How do I reset my password?", "en") == "en: How do I reset my password?"
    assert search("how do i reset my password", "fr") == "fr: how do i reset my password"
    assert len(calls) == 2


def test_a_python_callable_can_be_the_embedder():
    seen = []

    def embed(text: str):
        seen.append(text)
        # A toy embedding: bag of lowercase words over a tiny vocabulary.
        vocab = ["weather", "paris", "lyon", "tomorrow", "forecast"]
        words = text.lower().replace("?", "").split()
        return [float(words.count(w)) for w in vocab]

    cache = SemanticCache(embedder=embed, threshold=0.95, guard=False)
    cache_manager.register("toy-semantic", cache)
    calls = []

    @readonly(cache_backend="toy-semantic")
    def f(query: str) -> str:
        calls.append(query)
        return query

    assert f("weather paris tomorrow") == "weather paris tomorrow"
    assert f("tomorrow paris weather") == "weather paris tomorrow"
    assert f("weather lyon tomorrow") == "weather lyon tomorrow"
    assert len(calls) == 2
    assert "tomorrow paris weather" in seen
    assert cache.dims() == 5


def test_semantic_params_must_be_parameters():
    with pytest.raises(PolicyError, match="semantic_params names 'text'"):
        @readonly(cache_backend="semantic", semantic_params=["text"])
        def f(query: str) -> str:
            return query
