"""Asynchronous tools: hits without a thread hop, coalescing of thousands of
tasks, cancellation, errors, timeouts, and an event loop that never blocks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from toolops import CircuitOpenError, ToolTimeout, readonly, sideeffect


def run(coro):
    return asyncio.run(coro)


def test_async_hit_and_miss():
    calls = []

    @readonly(cache_ttl=60)
    async def search(query: str) -> str:
        calls.append(query)
        await asyncio.sleep(0.01)
        return "result for " + query

    async def main():
        assert await search("paris") == "result for paris"
        assert await search("paris") == "result for paris"
        assert await search(query="paris") == "result for paris"

    run(main())
    assert calls == ["paris"]
    assert search.stats()["fresh_hit"] == 2


def test_ten_thousand_concurrent_tasks_make_one_upstream_call():
    calls = []

    @readonly()
    async def slow(q: str) -> dict:
        calls.append(q)
        await asyncio.sleep(0.2)
        return {"answer": 42}

    async def main():
        return await asyncio.gather(*[slow("the same question") for _ in range(10_000)])

    results = run(main())
    assert len(results) == 10_000 and all(r == {"answer": 42} for r in results)
    assert len(calls) == 1
    stats = slow.stats()
    print(f"\n10,000 concurrent tasks, one argument: {len(calls)} upstream call; "
          f"coalesced {stats['coalesced']}, fresh hits {stats['fresh_hit']}")
    assert stats["upstream_success"] == 1
    assert stats["coalesced"] + stats["fresh_hit"] == 9_999


def test_a_cancelled_caller_never_cancels_the_shared_call():
    calls = []
    finished = []

    @readonly()
    async def slow(q: str) -> str:
        calls.append(q)
        await asyncio.sleep(0.2)
        finished.append(q)
        return "done"

    async def main():
        leader = asyncio.ensure_future(slow("x"))
        await asyncio.sleep(0.05)
        followers = [asyncio.ensure_future(slow("x")) for _ in range(5)]
        await asyncio.sleep(0.05)
        leader.cancel()
        followers[0].cancel()
        results = await asyncio.gather(*followers[1:])
        with pytest.raises(asyncio.CancelledError):
            await leader
        # The result was cached for later callers too.
        assert await slow("x") == "done"
        return results

    assert run(main()) == ["done"] * 4
    assert calls == ["x"] and finished == ["x"]


def test_the_tools_exception_reaches_every_task():
    calls = []

    class RateLimited(Exception):
        pass

    @readonly()
    async def api(q: str) -> str:
        calls.append(q)
        await asyncio.sleep(0.1)
        raise RateLimited("slow down")

    async def main():
        return await asyncio.gather(*[api("x") for _ in range(50)], return_exceptions=True)

    errors = run(main())
    assert len(calls) == 1
    assert all(isinstance(e, RateLimited) for e in errors)
    assert all(e is errors[0] for e in errors)


def test_async_retries_and_breaker():
    attempts = []

    @readonly(retry_count=2, retry_delay=0.001, circuit_breaker=True,
              circuit_failure_threshold=2)
    async def flaky(q: str) -> str:
        attempts.append(q)
        raise ConnectionError("reset")

    async def main():
        # The breaker opened after the second attempt, so the retry that
        # would have followed is refused, naming the last error.
        with pytest.raises(CircuitOpenError, match="reset"):
            await flaky("a")
        with pytest.raises(CircuitOpenError):
            await flaky("b")

    run(main())
    # Two attempts opened the breaker; the third attempt of the first call
    # and the second call were refused without calling the tool.
    assert len(attempts) == 2


def test_async_attempt_timeout():
    @readonly(timeout=0.05)
    async def slow(q: str) -> str:
        await asyncio.sleep(1)
        return q

    async def main():
        with pytest.raises(ToolTimeout):
            await slow("x")

    started = time.monotonic()
    run(main())
    assert time.monotonic() - started < 0.9


def test_the_event_loop_keeps_running_while_calls_wait():
    ticks = []

    @readonly()
    async def slow(q: str) -> str:
        await asyncio.sleep(0.3)
        return q

    async def ticker():
        for _ in range(20):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main():
        await asyncio.gather(ticker(), *[slow(f"q{i % 5}") for i in range(200)])

    run(main())
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) == 20
    assert max(gaps) < 0.25  # Never held up for the 0.3 s the calls took.


def test_async_tools_work_from_several_event_loops_in_threads():
    calls = []

    @readonly()
    async def f(q: str) -> str:
        calls.append(q)
        await asyncio.sleep(0.05)
        return q * 2

    results = []

    def thread_main(i):
        async def main():
            return await asyncio.gather(*[f(f"k{j}") for j in range(10)])

        results.append(asyncio.run(main()))

    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 4
    assert all(r == [f"k{j}" * 2 for j in range(10)] for r in results)
    assert sorted(set(calls)) == [f"k{j}" for j in range(10)]
    assert len(calls) == 10  # Flights and entries are shared by every loop.


def test_async_side_effect_is_never_coalesced():
    sent = []

    @sideeffect()
    async def send(to: str) -> str:
        sent.append(to)
        await asyncio.sleep(0.01)
        return "ok"

    async def main():
        return await asyncio.gather(*[send("a") for _ in range(5)])

    assert run(main()) == ["ok"] * 5
    assert len(sent) == 5


def test_async_fallback_function_may_be_a_coroutine():
    async def fallback(q):
        return f"fallback {q}"

    @readonly(fallback=fallback, circuit_breaker=False)
    async def down(q: str) -> str:
        raise ConnectionError("down")

    assert run(down("x")) == "fallback x"


def test_the_attempt_sees_the_callers_context_variables():
    import contextvars

    request_id = contextvars.ContextVar("request_id", default=None)
    seen = []

    @readonly()
    async def f(q: str) -> str:
        seen.append(request_id.get())
        return q

    async def main():
        request_id.set("req-42")
        return await f("x")

    assert run(main()) == "x"
    assert seen == ["req-42"]
