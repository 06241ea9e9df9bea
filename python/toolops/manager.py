"""cache_manager: the named stores of this process.

    from toolops import cache_manager
    from toolops.cache import RedisCache

    cache_manager.register("redis", RedisCache(url="redis://localhost:6379/0"), is_default=True)
    await cache_manager.invalidate("redis", tags=["weather"])

``get``, ``set``, ``delete``, ``clear``, ``invalidate`` and ``stats`` are
coroutines (as in ToolOps 1.0); store I/O runs in a worker thread, never on
the event loop. Raw entries written with ``set`` live under a key prefix of
their own and never meet the entries of wrapped tools.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any, Iterable

from . import _core
from .cache import CacheStore, MemoryCache, SemanticCache
from .codec import JsonCodec
from .errors import PolicyError

_RAW_PREFIX = "toolops:raw:"
_MAX_TAGGED_KEYS = 100_000


class CacheManager:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[str, CacheStore] = {}
        self._default = "memory"
        self._codec = JsonCodec()
        # Raw keys by tag, per store (bounded), and the wrapped tools by tag.
        self._raw_tags: dict[str, dict[str, set[str]]] = {}
        self._tools: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.register("memory", MemoryCache())
        self.register("semantic", SemanticCache())

    # -- stores --------------------------------------------------------------

    def register(self, name: str, store: CacheStore, is_default: bool = False) -> None:
        """Opens `store` under `name` (replacing a store of that name)."""
        if not name or not isinstance(name, str):
            raise PolicyError(f"a store name must be a non-empty str, not {name!r}")
        if not isinstance(store, CacheStore):
            raise PolicyError(f"cache_manager.register('{name}', ...) needs a toolops.cache "
                              f"store (MemoryCache, RedisCache, ...), not {type(store).__name__}")
        store.open(name)
        with self._lock:
            self._stores[name] = store
            if is_default:
                self._default = name

    def resolve(self, name: str | None) -> tuple[str, CacheStore]:
        """The store of that name (the default for None). PolicyError when
        there is none, naming the stores there are."""
        with self._lock:
            key = name or self._default
            store = self._stores.get(key)
            if store is None:
                known = ", ".join(sorted(self._stores))
                raise PolicyError(f"cache_backend '{key}' is not registered (registered: "
                                  f"{known}); call cache_manager.register('{key}', store) first")
            return key, store

    @property
    def default(self) -> str:
        return self._default

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._stores)

    def _track_tool(self, tool: Any) -> None:
        self._tools.add(tool)

    # -- raw entries ---------------------------------------------------------

    @staticmethod
    def _core_store(name: str, store: CacheStore) -> str:
        return store.store if isinstance(store, SemanticCache) else name

    async def get(self, name: str, key: str) -> Any | None:
        """The value stored under `key` with `set`, or None."""
        core_name = self._core_store(*self.resolve(name))
        data = await asyncio.to_thread(_core.store_get, core_name, _RAW_PREFIX + key)
        return None if data is None else self._codec.decode(data)

    async def set(self, name: str, key: str, value: Any, ttl: float, *,
                  tags: Iterable[str] | None = None, stale_ttl: float | None = None) -> None:
        """Stores a JSON-compatible `value` under `key` for `ttl` seconds."""
        if ttl <= 0:
            raise PolicyError(f"ttl is {ttl}; it must be a positive number of seconds")
        data = self._codec.encode(value)
        if data is None:
            raise PolicyError(f"cache_manager.set: a {type(value).__name__} is not "
                              "JSON-compatible data")
        store_name, store = self.resolve(name)
        core_name = self._core_store(store_name, store)
        await asyncio.to_thread(_core.store_put, core_name, _RAW_PREFIX + key, data, float(ttl))
        for tag in tags or ():
            with self._lock:
                keys = self._raw_tags.setdefault(store_name, {}).setdefault(tag, set())
                if len(keys) < _MAX_TAGGED_KEYS:
                    keys.add(key)

    async def delete(self, name: str, key: str) -> bool:
        core_name = self._core_store(*self.resolve(name))
        return await asyncio.to_thread(_core.store_delete, core_name, _RAW_PREFIX + key)

    async def clear(self, name: str | None = None) -> int:
        """Removes every entry of the store; returns how many."""
        store_name, store = self.resolve(name)
        with self._lock:
            self._raw_tags.pop(store_name, None)
        return await asyncio.to_thread(_core.store_clear, self._core_store(store_name, store), b"")

    async def invalidate(self, name: str | None = None, *, tags: Iterable[str] | None = None,
                         keys: Iterable[str] | None = None) -> int:
        """Removes the raw entries under `keys`, the raw entries set with one
        of `tags`, and every cached result of the wrapped tools that carry
        one of `tags` (``cache_tags``) in this store. Returns how many
        entries were removed."""
        store_name, store = self.resolve(name)
        core_name = self._core_store(store_name, store)
        tags = set(tags or ())
        raw = set(keys or ())
        with self._lock:
            by_tag = self._raw_tags.get(store_name, {})
            for tag in tags:
                raw |= by_tag.pop(tag, set())
            tools = [t for t in self._tools if tags and t._store_name == store_name]

        def work() -> int:
            removed = sum(1 for k in raw if _core.store_delete(core_name, _RAW_PREFIX + k))
            for tool in tools:
                removed += tool._invalidate_tags(tags)
            return removed

        return await asyncio.to_thread(work)

    async def stats(self) -> dict[str, Any]:
        """Per store: entries, bytes, hits, misses, evictions; per tool: its
        outcome counters."""
        def work() -> dict[str, Any]:
            out: dict[str, Any] = {"default": self._default, "stores": {}, "tools": {}}
            for name in self.names():
                core_name = self._core_store(name, self._stores[name])
                out["stores"][name] = _core.store_stats(core_name)
            for tool in list(self._tools):
                out["tools"][tool.name] = tool.stats()
            return out

        return await asyncio.to_thread(work)


cache_manager = CacheManager()
