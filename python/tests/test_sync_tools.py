"""Blocking tools through the Python binding: keys, caching, retries,
errors, breaker, timeouts, fallbacks, side effects, threads."""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings

import pytest

import toolops
from toolops import (CircuitOpenError, DataclassCodec, PolicyError, RetryableError, ToolTimeout,
                     readonly, sideeffect, tool)


def counting(fn):
    """The tool function, with a list of the arguments of every real call."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append((args, kwargs))
        return fn(*args, **kwargs)

    wrapped.calls = calls
    return wrapped


def test_hits_are_served_without_calling_the_tool():
    calls = []

    @readonly(cache_ttl=60)
    def search(query: str) -> str:
        calls.append(query)
        return "result for " + query

    assert search("paris") == "result for paris"
    assert search("paris") == "result for paris"
    assert search("lyon") == "result for lyon"
    assert calls == ["paris", "lyon"]
    stats = search.stats()
    assert stats["calls"] == 3 and stats["fresh_hit"] == 1 and stats["upstream_success"] == 2


def test_defaults_and_keywords_share_the_key_of_the_positional_call():
    calls = []

    @readonly()
    def search(query: str, limit: int = 10, lang: str = "en") -> str:
        calls.append((query, limit, lang))
        return f"{query}/{limit}/{lang}"

    assert search("q") == "q/10/en"
    assert search("q", 10) == "q/10/en"
    assert search("q", limit=10) == "q/10/en"
    assert search(query="q", lang="en") == "q/10/en"
    assert search("q", 11) == "q/11/en"
    assert calls == [("q", 10, "en"), ("q", 11, "en")]


def test_equal_values_of_different_types_never_share_an_entry():
    calls = []

    @readonly()
    def echo(x) -> str:
        calls.append(x)
        return repr(x)

    values = ["1", 1, 1.5, True, None, b"1", [1], (1, 2), {"a": 1}, {"a": "1"}, [[1]], "", 0]
    for v in values:
        assert echo(v) == repr(v)
    # bool True and int 1 are different arguments; so are "1" and b"1".
    assert len(calls) == len(values)
    # A tuple is keyed as the list it equals; dict key order does not matter.
    assert echo([1, 2]) == repr((1, 2))
    assert echo({"b": 2, "a": 1}) == echo({"a": 1, "b": 2})


def test_only_named_key_params_take_part():
    calls = []

    @readonly(cache_key_params=["query"])
    def search(query: str, request_id: str) -> str:
        calls.append(request_id)
        return query

    assert search("q", "r1") == "q"
    assert search("q", "r2") == "q"
    assert calls == ["r1"]


def test_sensitive_params_never_reach_the_key():
    @readonly(sensitive_params=["api_key"])
    def search(query: str, api_key: str) -> str:
        return query

    key = search.toolops._core.key("weather", "sk-very-secret-token")
    assert key is not None and b"weather" in key
    assert b"sk-very-secret-token" not in key
    assert search("weather", "sk-one") == search("weather", "sk-two")
    assert search.stats()["fresh_hit"] == 1


def test_scope_keeps_private_results_apart():
    calls = []

    @readonly(scope="tenant")
    def account(tenant: str, field: str) -> str:
        calls.append(tenant)
        return f"{tenant}:{field}"

    assert account("acme", "plan") == "acme:plan"
    assert account("globex", "plan") == "globex:plan"
    assert account("acme", "plan") == "acme:plan"
    assert calls == ["acme", "globex"]


def test_methods_do_not_key_on_the_instance():
    class Client:
        def __init__(self, name):
            self.name = name
            self.calls = 0

        @readonly()
        def fetch(self, q: str) -> str:
            self.calls += 1
            return q.upper()

    a, b = Client("a"), Client("b")
    assert a.fetch("x") == "X"
    assert b.fetch("x") == "X"
    assert a.calls + b.calls == 1


def test_wrong_arguments_raise_type_error_like_the_function():
    @readonly()
    def f(a: str, b: int = 1) -> str:
        return a

    with pytest.raises(TypeError, match="missing required argument: 'a'"):
        f()
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        f("x", c=2)
    with pytest.raises(TypeError, match="multiple values for argument 'a'"):
        f("x", a="y")
    with pytest.raises(TypeError, match="positional arguments"):
        f("x", 1, 2)


def test_signatures_with_star_args_and_keyword_only_params():
    calls = []

    @readonly()
    def f(a, *rest, flag=False, **extra):
        calls.append((a, rest, flag, extra))
        return [a, list(rest), flag, extra]

    assert f(1, 2, 3, flag=True, x=1) == [1, [2, 3], True, {"x": 1}]
    assert f(1, 2, 3, x=1, flag=True) == [1, [2, 3], True, {"x": 1}]
    assert f(1, 2) == [1, [2], False, {}]
    assert len(calls) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(cache_ttl=-1), "cache_ttl is -1"),
    (dict(cache_ttl=0), "cache_ttl is 0"),
    (dict(retry_count=-1), "retry_count is -1"),
    (dict(retry_count=1.5), "retry_count is 1.5"),
    (dict(retry_delay=-0.5), "retry_delay is -0.5"),
    (dict(timeout=0), "timeout is 0"),
    (dict(cache_key_params=["nope"]), "cache_key_params names 'nope'"),
    (dict(sensitive_params="q"), "sensitive_params is 'q'"),
    (dict(cache_backend="nowhere"), "cache_backend 'nowhere' is not registered"),
    (dict(circuit_failure_threshold=0, circuit_breaker=True), "circuit_failure_threshold is 0"),
    (dict(stale_ttl=5), "stale_ttl is set but stale_if_error is False"),
    (dict(semantic_threshold=1.5, cache_backend="semantic"), "semantic_threshold is 1.5"),
    (dict(backoff_multiplier=0.5), "backoff_multiplier is 0.5"),
    (dict(breaker_window="sliding"), "breaker_window is 'sliding'"),
    (dict(unknown_option=1), "unknown argument 'unknown_option'"),
])
def test_bad_arguments_fail_when_the_tool_is_wrapped(kwargs, message):
    with pytest.raises(PolicyError, match=message):
        @readonly(**kwargs)
        def f(q: str) -> str:
            return q


def test_core_validation_names_the_field():
    with pytest.raises(PolicyError, match="half_open_probes"):
        @readonly(half_open_probes=0)
        def f(q: str) -> str:
            return q


def test_transient_errors_are_retried_and_others_are_not():
    flaky_calls, broken_calls = [], []

    @readonly(retry_count=3, retry_delay=0.001)
    def flaky(q: str) -> str:
        flaky_calls.append(q)
        if len(flaky_calls) < 3:
            raise ConnectionError("connection reset")
        return "ok"

    @readonly(retry_count=3, retry_delay=0.001)
    def broken(q: str) -> str:
        broken_calls.append(q)
        raise ValueError("bad query")

    assert flaky("x") == "ok"
    assert len(flaky_calls) == 3
    with pytest.raises(ValueError, match="bad query"):
        broken("x")
    assert len(broken_calls) == 1
    assert flaky.stats()["retries"] == 2


def test_retry_on_chooses_the_exceptions_worth_retrying():
    calls = []

    @readonly(retry_count=2, retry_delay=0.001, retry_on=(ValueError,))
    def f(q: str) -> str:
        calls.append(q)
        raise ValueError("again")

    with pytest.raises(ValueError):
        f("x")
    assert len(calls) == 3


def test_http_style_errors_are_classified_by_status_and_retry_after():
    class HttpError(Exception):
        def __init__(self, status, retry_after=None):
            super().__init__(f"HTTP {status}")
            self.status_code = status
            self.headers = {"Retry-After": retry_after} if retry_after else {}

    seen = []

    @readonly(retry_count=2, retry_delay=0.001)
    def api(q: str) -> str:
        seen.append(time.monotonic())
        if len(seen) == 1:
            raise HttpError(429, "0.2")
        if len(seen) == 2:
            raise HttpError(503)
        return "ok"

    assert api("x") == "ok"
    assert len(seen) == 3
    # The Retry-After hint was honoured before the second attempt.
    assert seen[1] - seen[0] >= 0.19

    not_found = []

    @readonly(retry_count=2, retry_delay=0.001)
    def missing(q: str) -> str:
        not_found.append(q)
        raise HttpError(404)

    with pytest.raises(HttpError):
        missing("x")
    assert len(not_found) == 1


def test_the_tools_own_exception_reaches_every_coalesced_caller():
    started = threading.Event()
    release = threading.Event()
    calls = []

    class QuotaError(Exception):
        pass

    @readonly()
    def slow(q: str) -> str:
        calls.append(q)
        started.set()
        release.wait(5)
        raise QuotaError("quota exceeded")

    errors = []

    def caller():
        try:
            slow("same")
        except QuotaError as e:
            errors.append(e)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    threads[0].start()
    assert started.wait(5)
    for t in threads[1:]:
        t.start()
    # The followers are waiting on the leader's flight by now.
    time.sleep(0.3)
    release.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert len(errors) == 8
    assert all(e is errors[0] for e in errors)


def test_breaker_opens_after_consecutive_failures_and_fails_fast():
    calls = []

    @readonly(circuit_breaker=True, circuit_failure_threshold=3, circuit_recovery_timeout=60)
    def down(q: str) -> str:
        calls.append(q)
        raise ConnectionError("refused")

    for i in range(3):
        with pytest.raises(ConnectionError):
            down(f"q{i}")
    with pytest.raises(CircuitOpenError) as info:
        down("q9")
    assert info.value.guard == "breaker"
    assert len(calls) == 3
    assert down.toolops.breaker_state == "open"
    assert down.stats()["rejected_by_breaker"] == 1


def test_breaker_can_be_turned_off():
    calls = []

    @readonly(circuit_breaker=False)
    def down(q: str) -> str:
        calls.append(q)
        raise ConnectionError("refused")

    for i in range(30):
        with pytest.raises(ConnectionError):
            down(f"q{i}")
    assert len(calls) == 30


def test_attempt_timeout_raises_tool_timeout():
    @readonly(timeout=0.05)
    def slow(q: str) -> str:
        time.sleep(0.5)
        return q

    with pytest.raises(ToolTimeout) as info:
        slow("x")
    assert isinstance(info.value, TimeoutError)
    assert info.value.guard == "attempt_timeout"


def test_fallback_value_and_function():
    @readonly(fallback="cached elsewhere", circuit_breaker=False)
    def a(q: str) -> str:
        raise ConnectionError("down")

    @readonly(fallback=lambda q: f"fallback for {q}", circuit_breaker=False)
    def b(q: str) -> str:
        raise ConnectionError("down")

    assert a("x") == "cached elsewhere"
    assert a.stats()["fallback"] == 1
    assert b("y") == "fallback for y"


def test_stale_if_error_serves_the_last_value_when_the_tool_fails():
    state = {"fail": False}

    @readonly(cache_ttl=0.1, stale_if_error=True, stale_ttl=60, circuit_breaker=False)
    def quote(symbol: str) -> float:
        if state["fail"]:
            raise ConnectionError("down")
        return 101.5

    assert quote("ACME") == 101.5
    time.sleep(0.15)
    state["fail"] = True
    assert quote("ACME") == 101.5
    assert quote.stats()["stale_if_error"] == 1


def test_results_round_trip_as_data():
    @readonly()
    def f(q: str):
        return {"q": q, "items": [1, 2.5, None, True, "é"], "nested": {"k": [[]]}}

    first = f("x")
    second = f("x")
    assert first == second == {"q": "x", "items": [1, 2.5, None, True, "é"],
                               "nested": {"k": [[]]}}
    assert second is not first  # Decoded from stored data, not shared.
    assert f.stats()["fresh_hit"] == 1


def test_bytes_results_are_stored_as_bytes():
    @readonly()
    def f(q: str) -> bytes:
        return b"\x00\x01" + q.encode()

    assert f("a") == b"\x00\x01a"
    assert f("a") == b"\x00\x01a"
    assert f.stats()["fresh_hit"] == 1


def test_a_result_that_is_not_data_is_returned_but_not_cached():
    calls = []

    class Opaque:
        pass

    @readonly()
    def f(q: str):
        calls.append(q)
        return Opaque()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r1 = f("x")
        r2 = f("x")
    assert isinstance(r1, Opaque) and isinstance(r2, Opaque)
    assert len(calls) == 2
    assert f.stats()["not_cached"] == 2
    assert len([w for w in caught if "cannot store" in str(w.message)]) == 1


def test_dataclass_codec():
    @dataclasses.dataclass
    class Forecast:
        city: str
        high: float

    @readonly(codec=DataclassCodec(Forecast))
    def forecast(city: str) -> Forecast:
        return Forecast(city, 21.5)

    assert forecast("Paris") == Forecast("Paris", 21.5)
    assert forecast("Paris") == Forecast("Paris", 21.5)
    assert forecast.stats()["fresh_hit"] == 1


def test_dataclass_and_enum_arguments_are_keyed_by_value():
    import enum

    class Unit(enum.Enum):
        C = "celsius"
        F = "fahrenheit"

    @dataclasses.dataclass
    class Where:
        city: str
        country: str

    calls = []

    @readonly()
    def weather(where: Where, unit: Unit) -> str:
        calls.append(where)
        return f"{where.city} in {unit.value}"

    assert weather(Where("Paris", "FR"), Unit.C) == "Paris in celsius"
    assert weather(Where("Paris", "FR"), Unit.C) == "Paris in celsius"
    assert weather(Where("Paris", "US"), Unit.C) == "Paris in celsius"
    assert weather(Where("Paris", "FR"), Unit.F) == "Paris in fahrenheit"
    assert len(calls) == 3


def test_side_effects_are_never_cached_and_retry_only_when_idempotent():
    sent = []

    @sideeffect()
    def send(to: str) -> str:
        sent.append(to)
        return "sent"

    assert send("a") == "sent" and send("a") == "sent"
    assert len(sent) == 2

    with pytest.raises(PolicyError, match="not marked idempotent"):
        @sideeffect(retry_count=2)
        def pay(amount: int) -> str:
            return "ok"

    attempts = []

    @sideeffect(retry_count=2, retry_delay=0.001, idempotent=True)
    def put(key: str) -> str:
        attempts.append(key)
        if len(attempts) < 2:
            raise RetryableError("try again")
        return "stored"

    assert put("k") == "stored"
    assert len(attempts) == 2

    with pytest.raises(PolicyError, match="@sideeffect takes no cache_ttl"):
        tool(side_effect=True, cache_ttl=5)(lambda x: x)


def test_many_threads_with_the_same_argument_call_upstream_once():
    calls = []
    barrier = threading.Barrier(32)

    @readonly()
    def slow(q: str) -> str:
        calls.append(q)
        time.sleep(0.2)
        return "answer"

    results = []

    def worker():
        barrier.wait()
        results.append(slow("same question"))

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == ["answer"] * 32
    assert len(calls) == 1
    stats = slow.stats()
    assert stats["upstream_success"] == 1
    assert stats["coalesced"] + stats["fresh_hit"] == 31


def test_invalidate_and_clear():
    calls = []

    @readonly()
    def f(q: str) -> str:
        calls.append(q)
        return q

    f("a"), f("b")
    assert f.invalidate("a") is True
    assert f.invalidate("a") is False
    f("a"), f("b")
    assert calls == ["a", "b", "a"]
    assert f.clear_cache() == 2
    f("b")
    assert calls[-1] == "b" and len(calls) == 4


def test_wrapped_function_keeps_its_name_doc_and_signature():
    import inspect

    @readonly()
    def search(query: str, limit: int = 5) -> str:
        """Searches the web."""
        return query

    assert search.__name__ == "search"
    assert search.__doc__ == "Searches the web."
    assert list(inspect.signature(search).parameters) == ["query", "limit"]
    assert toolops.__version__
