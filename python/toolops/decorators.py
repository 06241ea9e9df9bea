"""``@readonly``, ``@sideeffect`` and ``@tool``: wrap a tool function once.

    from toolops import readonly, sideeffect

    @readonly(cache_backend="semantic", cache_ttl=3600, retry_count=3)
    async def run_tool(query: str) -> str:
        return await paid_tool.call(query)

    @sideeffect(retry_count=2, idempotent=True)
    def send_invoice(invoice_id: str, amount: float) -> dict: ...

Every call of the wrapped function runs through the C++ core: exact (and,
for ``cache_backend="semantic"``, semantic) caching with TTL and stale
windows, coalescing of identical calls in flight (across processes with a
shared store), retries with full-jitter exponential backoff under a
per-tool budget and an optional deadline, attempt timeouts, a circuit
breaker, a concurrency limit and a fallback. Sync functions stay sync (safe
from many threads; the GIL is released while they wait); async functions
stay async and never block the event loop.

Arguments are checked here, when the tool is wrapped: a bad value raises
``PolicyError`` naming the argument and what it must be.

Differences from ToolOps 1.0, on purpose:

- Defaults are filled in before keying: ``f(a)`` and ``f(a, b=<default>)``
  share one entry.
- Coalescing is on by default for reads (``coalesce=True``).
- Sensitive parameters never reach a key, a store or a log line.
- Retries go through the circuit breaker and the retry budget, and only
  errors that retrying can help are retried (timeouts, connection errors,
  HTTP 429 and 5xx, ``RetryableError``); pass ``retry_on=(Exception,)`` to
  retry everything.
- ``circuit_breaker=None`` (the default) keeps the core's rate-based breaker
  (50% failures over the last 100 calls, at least 20 calls);
  ``circuit_breaker=True`` opens after ``circuit_failure_threshold``
  consecutive failures, as before; ``False`` turns it off.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
from typing import Any, Callable, Iterable, Sequence

from . import _core
from .cache import SemanticCache
from .codec import JsonCodec, result_hooks, to_data
from .config import _ensure_configured
from .errors import PolicyError, RetryableError, ToolOpsError, error_for
from .manager import cache_manager

_CODES = dict(_core.STATUS_CODES)
_CODE_NAMES = {v: k for k, v in _CODES.items()}
_TRANSIENT = [_CODES[c] for c in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED",
                                   "ABORTED")]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()

# Attempt tasks of async tools, kept until they finish.
_ATTEMPTS: set = set()


# -- exceptions to status codes ------------------------------------------------

def _http_status(exc: BaseException) -> int | None:
    for holder in (exc, getattr(exc, "response", None)):
        if holder is None:
            continue
        for attr in ("status_code", "status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


def _retry_after_hint(exc: BaseException) -> float:
    hint = getattr(exc, "retry_after", None)
    if isinstance(hint, (int, float)) and math.isfinite(hint) and hint > 0:
        return float(hint)
    for holder in (exc, getattr(exc, "response", None)):
        headers = getattr(holder, "headers", None) if holder is not None else None
        if headers is None:
            continue
        try:
            value = headers.get("Retry-After") or headers.get("retry-after")
        except Exception:
            value = None
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except (TypeError, ValueError):
            return 0.0
    return 0.0


def _code_of(exc: BaseException) -> str:
    if isinstance(exc, RetryableError):
        return "UNAVAILABLE"
    if isinstance(exc, ToolOpsError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "DEADLINE_EXCEEDED"
    if isinstance(exc, ConnectionError):
        return "UNAVAILABLE"
    status = _http_status(exc)
    if status is not None:
        if status == 429:
            return "RESOURCE_EXHAUSTED"
        if status in (500, 502, 503, 504):
            return "UNAVAILABLE"
        if status == 401:
            return "UNAUTHENTICATED"
        if status == 403:
            return "PERMISSION_DENIED"
        if status == 404:
            return "NOT_FOUND"
        if 400 <= status < 500:
            return "INVALID_ARGUMENT"
        return "UNKNOWN"
    return "UNKNOWN"


def _classifier(retry_on: tuple | None) -> Callable:
    def classify(exc: BaseException) -> tuple[int, float, str]:
        code = _code_of(exc)
        if retry_on is not None:
            if isinstance(exc, retry_on) and code not in ("RESOURCE_EXHAUSTED",):
                code = "UNAVAILABLE"
            elif not isinstance(exc, retry_on) and _CODES[code] in _TRANSIENT:
                code = "UNKNOWN"
        return _CODES[code], _retry_after_hint(exc), f"{type(exc).__name__}: {exc}"

    return classify


def _make_error(code: int, guard: str, message: str, retry_after: float) -> ToolOpsError:
    return error_for(_CODE_NAMES.get(code, "UNKNOWN"), guard, message, retry_after)


# -- async plumbing (called by the binding) ------------------------------------

def _complete(fut: asyncio.Future, ok: bool, value: Any) -> None:
    if fut.done():
        return  # The caller was cancelled; the call went on for the others.
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _settle(where: tuple, fut: asyncio.Future, ok: bool, value: Any) -> None:
    # `where` is (loop, context) of the call, as the wrapper passed it.
    where[0].call_soon_threadsafe(_complete, fut, ok, value)


def _attempt_starter(attempt_timeout: float | None) -> Callable:
    async def run(fn: Callable, args: tuple, kwargs: dict | None, done: Any) -> None:
        try:
            coro = fn(*args, **(kwargs or {}))
            if attempt_timeout:
                value = await asyncio.wait_for(coro, attempt_timeout)
            else:
                value = await coro
        except BaseException as e:  # Reported to the core, which decides.
            done.set_exception(e)
            if not isinstance(e, (Exception, asyncio.CancelledError)):
                raise
        else:
            done.set_result(value)

    def spawn(loop: asyncio.AbstractEventLoop, context: Any, fn: Callable, args: tuple,
              kwargs: dict | None, done: Any) -> None:
        # The attempt sees the caller's context variables (tracing, request ids).
        task = loop.create_task(run(fn, args, kwargs, done), context=context)
        _ATTEMPTS.add(task)
        task.add_done_callback(_ATTEMPTS.discard)

    def start(where: tuple, fn: Callable, args: tuple, kwargs: dict | None, done: Any,
              attempt: int) -> None:
        loop, context = where
        loop.call_soon_threadsafe(spawn, loop, context, fn, args, kwargs, done)

    return start


# -- argument checks -----------------------------------------------------------

def _seconds(name: str, value: Any, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PolicyError(f"{name} is {value!r}; it must be a number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "positive"
        raise PolicyError(f"{name} is {value!r}; it must be {bound}")
    return float(value)


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PolicyError(f"{name} is {value!r}; it must be an integer of at least {minimum}")
    return value


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise PolicyError(f"{name} is {value!r}; it must be in (0, 1]")
    return float(value)


def _names(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{name} is {value!r}; it must be a list of parameter names")
    return list(value)


def _check_params(what: str, names: Iterable[str], params: Sequence[str], fn_name: str) -> None:
    for n in names:
        if n not in params:
            raise PolicyError(f"{what} names '{n}', which is not a parameter of {fn_name}() "
                              f"(its parameters: {', '.join(params) or 'none'})")


# -- the wrapped tool ----------------------------------------------------------

class _Flattened:
    """Calls fn with arguments given in parameter order (for signatures with
    *args, **kwargs, keyword-only or positional-only parameters)."""

    def __init__(self, fn: Callable, sig: inspect.Signature) -> None:
        self.fn = fn
        self.params = list(sig.parameters.values())

    def __call__(self, *flat: Any) -> Any:
        args: list = []
        kwargs: dict = {}
        for p, v in zip(self.params, flat):
            if p.kind is p.VAR_POSITIONAL:
                args.extend(v)
            elif p.kind is p.VAR_KEYWORD:
                kwargs.update(v)
            elif p.kind is p.KEYWORD_ONLY:
                kwargs[p.name] = v
            else:
                args.append(v)
        return self.fn(*args, **kwargs)


def _wrap(fn: Callable, *, kind: str, options: dict) -> Callable:
    if not callable(fn):
        raise PolicyError(f"@{kind} wraps a function, not {fn!r}")
    _ensure_configured()
    is_async = inspect.iscoroutinefunction(fn)
    sig = inspect.signature(fn)
    all_params = list(sig.parameters.values())
    skip_first = 1 if all_params and all_params[0].name in ("self", "cls") else 0
    params = all_params[skip_first:]
    simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
    names = [p.name for p in params]
    fn_name = options.get("name") or getattr(fn, "__qualname__", getattr(fn, "__name__", "tool"))
    name = options.get("name") or f"{fn.__module__}.{fn_name}"

    # The policy, field by field, each argument checked where it is read.
    policy: dict[str, Any] = {"kind": kind}
    o = options
    sensitive = _names("sensitive_params", o.get("sensitive_params"))
    _check_params("sensitive_params", sensitive, names, fn_name)
    policy["sensitive_params"] = sensitive
    if o.get("scope"):
        _check_params("scope", [o["scope"]], names, fn_name)
        policy["scope_param"] = o["scope"]
    if o.get("cost_per_call") is not None:
        policy["cost_per_call"] = _seconds("cost_per_call", o["cost_per_call"])

    retry_count = _count("retry_count", o.get("retry_count", 0), 0)
    policy["retry.max_attempts"] = retry_count + 1
    policy["retry.initial_backoff"] = _seconds("retry_delay", o.get("retry_delay", 1.0))
    policy["retry.max_backoff"] = max(_seconds("max_backoff", o.get("max_backoff", 30.0)),
                                      policy["retry.initial_backoff"])
    multiplier = o.get("backoff_multiplier", 2.0)
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or multiplier < 1:
        raise PolicyError(f"backoff_multiplier is {multiplier!r}; it must be at least 1")
    policy["retry.multiplier"] = float(multiplier)
    budget = o.get("retry_budget", 0.2)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
        raise PolicyError(f"retry_budget is {budget!r}; it must be a ratio of at least 0 "
                          "(0.2: retries add at most 20% to the upstream calls)")
    policy["retry.budget_ratio"] = float(budget)
    retry_on = o.get("retry_on")
    if retry_on is not None:
        retry_on = tuple(retry_on) if isinstance(retry_on, (list, tuple)) else (retry_on,)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on):
            raise PolicyError(f"retry_on is {o['retry_on']!r}; it must be exception classes")
    if o.get("timeout") is not None:
        policy["timeout.attempt_timeout"] = _seconds("timeout", o["timeout"], allow_zero=False)
    if o.get("deadline") is not None:
        policy["timeout.deadline"] = _seconds("deadline", o["deadline"], allow_zero=False)

    breaker = o.get("circuit_breaker")
    if breaker is False:
        policy["breaker.enabled"] = False
    elif breaker is True:
        threshold = _count("circuit_failure_threshold", o.get("circuit_failure_threshold", 5), 1)
        policy["breaker.window_size"] = threshold
        policy["breaker.minimum_calls"] = threshold
        policy["breaker.failure_rate_threshold"] = 1.0
    elif breaker is not None:
        raise PolicyError(f"circuit_breaker is {breaker!r}; it must be True, False or None")
    policy["breaker.open_wait"] = _seconds("circuit_recovery_timeout",
                                           o.get("circuit_recovery_timeout", 30.0),
                                           allow_zero=False)
    for key, field in (("breaker_window", "breaker.window"),):
        if o.get(key) is not None:
            if o[key] not in ("count", "time"):
                raise PolicyError(f"{key} is {o[key]!r}; it must be 'count' or 'time'")
            policy[field] = o[key]
    if o.get("breaker_window_size") is not None:
        policy["breaker.window_size"] = _count("breaker_window_size", o["breaker_window_size"], 1)
    if o.get("breaker_window_seconds") is not None:
        policy["breaker.window_duration"] = _seconds("breaker_window_seconds",
                                                     o["breaker_window_seconds"], allow_zero=False)
    if o.get("breaker_minimum_calls") is not None:
        policy["breaker.minimum_calls"] = _count("breaker_minimum_calls",
                                                 o["breaker_minimum_calls"], 1)
    if o.get("breaker_failure_rate") is not None:
        policy["breaker.failure_rate_threshold"] = _fraction("breaker_failure_rate",
                                                             o["breaker_failure_rate"])
    if o.get("slow_call_seconds") is not None:
        policy["breaker.slow_call_duration"] = _seconds("slow_call_seconds",
                                                        o["slow_call_seconds"], allow_zero=False)
    if o.get("slow_call_rate") is not None:
        policy["breaker.slow_call_rate_threshold"] = _fraction("slow_call_rate",
                                                               o["slow_call_rate"])
    if o.get("half_open_probes") is not None:
        policy["breaker.half_open_probes"] = _count("half_open_probes", o["half_open_probes"], 1)
    if o.get("max_concurrent") is not None:
        policy["limit.max_concurrent"] = _count("max_concurrent", o["max_concurrent"], 0)
    if o.get("max_wait") is not None:
        policy["limit.max_wait"] = _seconds("max_wait", o["max_wait"])

    store_name = None
    semantic: SemanticCache | None = None
    embedder = None
    embedder_dims = 0
    tool_tags: list[str] = []
    tags_fn = None
    if kind == "readonly":
        backend = o.get("cache_backend", "memory")
        if backend is None:
            policy["cache.enabled"] = False
        else:
            if isinstance(backend, SemanticCache):
                semantic = backend
            else:
                store_name, store = cache_manager.resolve(backend)
                if isinstance(store, SemanticCache):
                    semantic = store
            if semantic is not None:
                store_name, store = cache_manager.resolve(semantic.store)
            if store.shared:
                # A shared store sits behind the process's memory layer.
                policy["cache.store"] = "memory"
                policy["cache.shared_store"] = store_name
            else:
                policy["cache.store"] = store_name
            ttl = o.get("cache_ttl", 3600)
            policy["cache.ttl"] = _seconds("cache_ttl", ttl, allow_zero=False)
            if o.get("stale_if_error"):
                window = o.get("stale_ttl")
                policy["cache.stale_if_error"] = (
                    _seconds("stale_ttl", window, allow_zero=False) if window is not None
                    else policy["cache.ttl"])
            elif o.get("stale_ttl") is not None:
                raise PolicyError("stale_ttl is set but stale_if_error is False; set "
                                  "stale_if_error=True to serve stale values when the tool fails")
            if o.get("stale_while_revalidate"):
                policy["cache.stale_while_revalidate"] = _seconds(
                    "stale_while_revalidate", o["stale_while_revalidate"], allow_zero=False)
            key_params = _names("cache_key_params", o.get("cache_key_params"))
            _check_params("cache_key_params", key_params, names, fn_name)
            policy["cache.key_params"] = key_params
            if o.get("normalize") is not None:
                policy["cache.normalization"] = o["normalize"]
            if semantic is not None:
                text_params = o.get("semantic_params") or semantic.params
                if text_params is None:
                    keyed = [p for p in params if p.name not in sensitive and
                             (not key_params or p.name in key_params) and p.name != o.get("scope")]
                    # The first text parameter; every other one must match exactly
                    # (a language, a city code) unless named in semantic_params.
                    text_params = [p.name for p in keyed if p.annotation in (str, "str")][:1]
                    if not text_params and keyed:
                        text_params = [keyed[0].name]
                text_params = _names("semantic_params", text_params)
                _check_params("semantic_params", text_params, names, fn_name)
                policy["cache.semantic.params"] = text_params
                threshold = o.get("semantic_threshold", semantic.threshold)
                if threshold is not None:
                    policy["cache.semantic.threshold"] = _fraction("semantic_threshold", threshold)
                policy["cache.semantic.guard"] = bool(semantic.guard)
                policy["cache.semantic.candidates"] = semantic.candidates
                policy["cache.semantic.max_per_partition"] = semantic.max_per_partition
                if semantic.embedder is not None:
                    embedder, embedder_dims = semantic.embedder, semantic.dims()
        coalesce = o.get("coalesce", True)
        if not isinstance(coalesce, bool):
            raise PolicyError(f"coalesce is {coalesce!r}; it must be True or False")
        policy["coalesce.enabled"] = coalesce
        cache_tags = o.get("cache_tags")
        if callable(cache_tags):
            tags_fn = cache_tags
        else:
            tool_tags = _names("cache_tags", cache_tags)
    else:
        for key in ("cache_backend", "cache_ttl", "cache_key_params", "cache_tags",
                    "stale_if_error", "stale_ttl", "coalesce", "stale_while_revalidate"):
            if o.get(key) is not None:
                raise PolicyError(f"@sideeffect takes no {key}: side effects are never cached "
                                  "or coalesced")
        policy["idempotent"] = bool(o.get("idempotent", False))
        if retry_count > 0 and not policy["idempotent"]:
            # Never do a write twice: retries need the caller's word.
            raise PolicyError(f"retry_count is {retry_count} but {fn_name}() is not marked "
                              "idempotent=True; a side effect is retried only when doing it "
                              "twice is safe")

    codec = o.get("codec") or JsonCodec()
    if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
        raise PolicyError(f"codec is {codec!r}; it must have encode(value) and decode(data)")
    encode, decode = result_hooks(codec, name, cached=kind == "readonly")
    hooks = {
        "to_data": to_data, "encode": encode, "decode": decode,
        "classify": _classifier(retry_on), "make_error": _make_error,
        "start_attempt": _attempt_starter(policy.get("timeout.attempt_timeout")),
        "settle": _settle, "missing": _MISSING,
    }
    if simple:
        core_fn = fn
        defaults = [p.default if p.default is not p.empty else _MISSING for p in params]
        core_names = names
    else:
        # Slow path: Python binds the call, the core sees parameters in order.
        core_fn = _Flattened(fn, sig)
        defaults = [_MISSING] * len(all_params)
        core_names = [p.name for p in all_params]
        skip_first_core = skip_first
    try:
        core = _core.make_tool(name, str(o.get("version", "1")), core_names, defaults,
                               skip_first if simple else skip_first_core, policy, core_fn,
                               hooks, embedder, embedder_dims)
    except ValueError as e:
        raise PolicyError(f"@{kind} on {fn_name}(): {e}") from None
    if o.get("fallback") is not None and not callable(o["fallback"]):
        core.set_fallback_value(o["fallback"])
    fallback_fn = o["fallback"] if callable(o.get("fallback")) else None

    if simple:
        bind = None
    else:
        def bind(args: tuple, kwargs: dict) -> tuple:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            return tuple(bound.arguments[p.name] for p in all_params)

    if tool_tags and policy.get("cache.shared_store"):
        # So that `toolops invalidate --tag` finds this tool from elsewhere.
        _core.record_tool_tags(policy["cache.shared_store"], core.key_prefix, tool_tags)
    wrapper = _make_wrapper(fn, core, is_async, bind, fallback_fn, tags_fn)
    handle = ToolHandle(name, core, store_name, tool_tags, bind, wrapper)
    functools.update_wrapper(wrapper, fn)
    wrapper.toolops = handle
    wrapper.stats = handle.stats
    wrapper.invalidate = handle.invalidate
    wrapper.clear_cache = handle.clear
    wrapper.tags = list(o.get("tags") or ())
    cache_manager._track_tool(handle)
    return wrapper


def _make_wrapper(fn: Callable, core: Any, is_async: bool, bind: Callable | None,
                  fallback: Callable | None, tags_fn: Callable | None) -> Callable:
    # The fast forms: C callables that reach the core with no Python frame.
    call, lookup, start = _core.make_fast(core, 0), _core.make_fast(core, 1), core.start
    missing = _MISSING
    if not is_async:
        if bind is None and fallback is None and tags_fn is None:
            return call
        else:
            def wrapper(*args, **kwargs):
                flat = bind(args, kwargs) if bind else None
                if tags_fn is not None:
                    _record_tags(core, tags_fn, fn, args, kwargs, flat)
                try:
                    if flat is not None:
                        return call(*flat)
                    return call(*args, **kwargs)
                except Exception:
                    if fallback is None:
                        raise
                    return fallback(*args, **kwargs)
        return wrapper

    async def run_async(args: tuple, kwargs: dict):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        start(args, kwargs, (loop, contextvars.copy_context()), fut)
        return await fut

    if bind is None and fallback is None and tags_fn is None:
        async def wrapper(*args, **kwargs):
            value = lookup(*args, **kwargs)
            if value is not missing:
                return value
            return await run_async(args, kwargs)
    else:
        async def wrapper(*args, **kwargs):
            flat = bind(args, kwargs) if bind else None
            if tags_fn is not None:
                _record_tags(core, tags_fn, fn, args, kwargs, flat)
            a, k = (flat, {}) if flat is not None else (args, kwargs)
            try:
                value = lookup(*a, **k)
                if value is not missing:
                    return value
                return await run_async(a, k)
            except Exception:
                if fallback is None:
                    raise
                result = fallback(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result
    return wrapper


_TAGGED: dict = {}


def _record_tags(core: Any, tags_fn: Callable, fn: Callable, args: tuple, kwargs: dict,
                 flat: tuple | None) -> None:
    key = core.key(*flat) if flat is not None else core.key(*args, **kwargs)
    if key is None:
        return
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        tags = tags_fn(dict(bound.arguments))
    except Exception:
        return
    per_tool = _TAGGED.setdefault(id(core), {})
    new_tags = []
    for tag in tags or ():
        keys = per_tool.setdefault(tag, set())
        if len(keys) < 100_000 and key not in keys:
            keys.add(key)
            new_tags.append(str(tag))
    if new_tags:
        # Once per tag and key in this process: the tool's shared store (if
        # it can) records them for `toolops invalidate --tag` elsewhere.
        _core.record_call_tags(core, key, new_tags)


class ToolHandle:
    """What a wrapped function exposes as ``fn.toolops``: its counters, its
    breaker, and its cached entries."""

    def __init__(self, name: str, core: Any, store_name: str | None, tags: list[str],
                 bind: Callable | None, wrapper: Callable) -> None:
        self.name = name
        self._core = core
        self._store_name = store_name
        self._tags = set(tags)
        self._bind = bind

    def stats(self) -> dict[str, int]:
        """Outcome counters: calls, fresh_hit, semantic_hit, coalesced,
        upstream_success, upstream_error, retries, rejected_by_breaker, ..."""
        return self._core.stats()

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Removes the cached result of the call with these arguments."""
        if self._bind is not None:
            return self._core.invalidate(*self._bind(args, kwargs))
        return self._core.invalidate(*args, **kwargs)

    def clear(self) -> int:
        """Removes every cached result of this tool in this process's store."""
        return self._core.clear()

    @property
    def breaker_state(self) -> str:
        return self._core.breaker_state()

    def _invalidate_tags(self, tags: set[str]) -> int:
        removed = 0
        if self._tags & tags:
            removed += self._core.clear()
        per_tool = _TAGGED.get(id(self._core), {})
        for tag in tags:
            for key in per_tool.pop(tag, ()):
                removed += bool(self._core.erase_key(key))
        return removed


_READ_DEFAULTS = dict(cache_backend="memory", cache_ttl=3600)


def readonly(cache_backend: Any = "memory", cache_ttl: float = 3600,
             cache_key_params: Sequence[str] | None = None,
             cache_tags: Sequence[str] | Callable | None = None,
             sensitive_params: Sequence[str] | None = None, stale_if_error: bool = False,
             stale_ttl: float | None = None, coalesce: bool = True,
             timeout: float | None = None, retry_count: int = 0, retry_delay: float = 1.0,
             fallback: Any = None, circuit_breaker: bool | None = None,
             circuit_failure_threshold: int = 5, circuit_recovery_timeout: float = 30.0,
             tags: Sequence[str] | None = None, **extra: Any) -> Callable:
    """A read of the outside world: cached, coalesced, retried.

    ToolOps 1.0's arguments keep their meaning (``cache_ttl``,
    ``stale_ttl``, ``timeout``, ``retry_delay`` and
    ``circuit_recovery_timeout`` in seconds; ``retry_count`` retries after
    the first attempt). The core's full policy is open through keyword
    arguments: ``name``, ``version``, ``scope`` (the parameter holding a
    tenant or user id: private results), ``semantic_params``,
    ``semantic_threshold``, ``normalize`` ("nfc", "nfkc", "nfkc_casefold"),
    ``stale_while_revalidate``, ``retry_on``, ``max_backoff``,
    ``backoff_multiplier``, ``retry_budget``, ``deadline``,
    ``breaker_window`` ("count" / "time"), ``breaker_window_size``,
    ``breaker_window_seconds``, ``breaker_minimum_calls``,
    ``breaker_failure_rate``, ``slow_call_seconds``, ``slow_call_rate``,
    ``half_open_probes``, ``max_concurrent``, ``max_wait``,
    ``cost_per_call`` and ``codec``.
    """
    options = dict(locals())
    options.pop("extra")
    options.update(_check_extra(extra))
    return lambda fn: _wrap(fn, kind="readonly", options=options)


def sideeffect(timeout: float | None = None, retry_count: int = 0, retry_delay: float = 1.0,
               fallback: Any = None, sensitive_params: Sequence[str] | None = None,
               circuit_breaker: bool | None = None, circuit_failure_threshold: int = 5,
               circuit_recovery_timeout: float = 30.0, tags: Sequence[str] | None = None,
               idempotent: bool = False, **extra: Any) -> Callable:
    """A write (payment, message, ...): never cached or coalesced; retried
    only with ``idempotent=True``; guarded by the breaker, the timeouts and
    the concurrency limit."""
    options = dict(locals())
    options.pop("extra")
    options.update(_check_extra(extra))
    return lambda fn: _wrap(fn, kind="sideeffect", options=options)


def tool(name: str | None = None, *, cache_backend: Any = None, **options: Any) -> Callable:
    """The general form: a read-only tool when ``cache_backend`` is given,
    otherwise a tool with no cache (coalescing still on unless
    ``coalesce=False``). ``side_effect=True`` makes it a side effect."""
    if options.pop("side_effect", False):
        return sideeffect(name=name, **options)
    if cache_backend is None:
        options.setdefault("coalesce", True)
    return readonly(cache_backend=cache_backend, name=name, **options)


_EXTRA = {"name", "version", "scope", "semantic_params", "semantic_threshold", "normalize",
          "stale_while_revalidate", "retry_on", "max_backoff", "backoff_multiplier",
          "retry_budget", "deadline", "breaker_window", "breaker_window_size",
          "breaker_window_seconds", "breaker_minimum_calls", "breaker_failure_rate",
          "slow_call_seconds", "slow_call_rate", "half_open_probes", "max_concurrent",
          "max_wait", "cost_per_call", "codec", "idempotent", "cache_backend", "cache_ttl",
          "cache_key_params", "cache_tags", "stale_if_error", "stale_ttl", "coalesce"}


def _check_extra(extra: dict) -> dict:
    for key in extra:
        if key not in _EXTRA:
            raise PolicyError(f"unknown argument '{key}'; see help(toolops.readonly) for the "
                              "arguments a tool takes")
    return extra
