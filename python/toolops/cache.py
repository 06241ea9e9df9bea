"""Cache stores, backed by the C++ stores.

Each class describes a store; ``cache_manager.register(name, store)`` opens
it in the core under that name, and decorators refer to it by name
(``cache_backend="redis"``). Two stores exist from the start: ``"memory"``
(``MemoryCache()``) and ``"semantic"`` (``SemanticCache()``: the memory
store, matched by meaning with the built-in embedder).

Stores that leave the process (SQLite, Redis / Valkey, PostgreSQL) keep
values in a versioned, checksummed envelope under SHA-256 key digests: raw
arguments never reach them, and a damaged entry is a miss, never a wrong
answer. Redis also coalesces calls across processes and can share breaker
openings; a Redis outage never fails a call.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from . import _core
from .errors import PolicyError, StoreError


class CacheStore:
    """Base of the store descriptions. ``open(name)`` creates it in the core."""

    #: True when the store is shared between processes (read after the
    #: local memory layer, and used to coalesce across processes).
    shared = False

    def open(self, name: str) -> None:  # pragma: no cover - every store overrides it
        raise NotImplementedError

    def _open(self, fn: Callable, *args: Any) -> None:
        try:
            fn(*args)
        except ValueError as e:
            raise StoreError(f"store '{args[0]}' could not be opened: {e}", code="UNAVAILABLE",
                             guard="store") from None


class MemoryCache(CacheStore):
    """The in-process store: sharded, W-TinyLFU eviction, bounded by entries
    and bytes. Hits copy no payload and take no lock."""

    def __init__(self, max_entries: int = 100_000, max_bytes: int = 256 << 20) -> None:
        if max_entries <= 0:
            raise PolicyError(f"MemoryCache max_entries is {max_entries}; it must be positive")
        if max_bytes <= 0:
            raise PolicyError(f"MemoryCache max_bytes is {max_bytes}; it must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def open(self, name: str) -> None:
        self._open(_core.register_memory_store, name, self.max_entries, self.max_bytes)


class SQLiteCache(CacheStore):
    """One SQLite file in WAL mode, shared safely by the processes of one
    host; durable across restarts."""

    shared = True

    def __init__(self, path: str = "toolops_cache.db", namespace: str = "toolops",
                 max_value_bytes: int = 1 << 20) -> None:
        if not path:
            raise PolicyError("SQLiteCache path is empty; give the database file's path")
        self.path = os.fspath(path)
        self.namespace = namespace
        self.max_value_bytes = max_value_bytes

    def open(self, name: str) -> None:
        self._open(_core.register_sqlite_store, name, self.path, self.namespace,
                   self.max_value_bytes)


class FileCache(SQLiteCache):
    """A cache in one file on disk (the SQLite store): ``FileCache("cache.db")``.
    Given a directory, the file ``toolops_cache.db`` inside it is used."""

    def __init__(self, path: str = "toolops_cache.db", namespace: str = "toolops") -> None:
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "toolops_cache.db")
        super().__init__(path, namespace)


class RedisCache(CacheStore):
    """Redis (or Valkey): pooled connections with timeouts, TLS, AUTH and ACL
    users, Cluster; coalescing across processes through leases with fencing
    tokens; outages never fail a call.

    Give ``url`` (``redis://user:pass@host:port/db``, ``rediss://`` for TLS)
    or host/port/db/password.
    """

    shared = True

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, db: int = 0,
                 password: str | None = None, *, url: str | None = None,
                 username: str | None = None, tls: bool = False, ca_file: str | None = None,
                 cluster: bool = False, namespace: str = "toolops", pool_size: int = 8) -> None:
        if not (0 < int(port) < 65536):
            raise PolicyError(f"RedisCache port is {port}; it must be 1 to 65535")
        self.url = url or ""
        self.host = host
        self.port = int(port)
        self.db = int(db)
        self.username = username or ""
        self.password = password or ""
        self.tls = tls
        self.ca_file = ca_file or ""
        self.cluster = cluster
        self.namespace = namespace
        self.pool_size = pool_size

    def open(self, name: str) -> None:
        self._open(_core.register_redis_store, name, self.url, self.host, self.port, self.db,
                   self.username, self.password, self.tls, self.ca_file, self.cluster,
                   self.namespace, self.pool_size)

    def __repr__(self) -> str:  # Never shows the password.
        where = self.url.split("@")[-1] if self.url else f"{self.host}:{self.port}/{self.db}"
        return f"{type(self).__name__}({where!r})"


class ValkeyCache(RedisCache):
    """Valkey speaks the Redis protocol: the same store."""


class PostgresCache(CacheStore):
    """One PostgreSQL table shared by processes on many hosts, durable, with
    expired rows purged in batches; coalescing across processes through
    leases with fencing tokens (a second table, LISTEN / NOTIFY); outages
    never fail a call. ``dsn`` is a libpq connection string or URL."""

    shared = True

    def __init__(self, dsn: str, *, table: str = "toolops_entries",
                 namespace: str = "toolops") -> None:
        if not dsn:
            raise PolicyError("PostgresCache dsn is empty; give a libpq connection string")
        self.dsn = dsn
        self.table = table
        self.namespace = namespace

    def open(self, name: str) -> None:
        self._open(_core.register_postgres_store, name, self.dsn, self.table, self.namespace)

    def __repr__(self) -> str:
        return f"PostgresCache(table={self.table!r})"


class ConfiguredStore(CacheStore):
    """A store opened by the core from the configuration file
    (``[stores.NAME]`` of toolops.toml); see ``toolops.configure``."""

    def __init__(self, type_name: str, shared: bool) -> None:
        self.type_name = type_name
        self.shared = shared

    def open(self, name: str) -> None:
        pass  # Already open in the core.

    def __repr__(self) -> str:
        return f"ConfiguredStore({self.type_name!r})"


class SemanticCache(CacheStore):
    """Answers a call whose free text means the same as an earlier call's.

    ``embedder``: None for the built-in embedder (a static model distilled
    from all-MiniLM-L6-v2, run in C++), or any callable from str to a
    sequence of floats (``dims`` then says how many; it is learned from one
    call when not given). ``threshold``: the lowest cosine similarity at
    which an answer is reused (None: the tuned default, 0.90). ``guard``:
    refuse candidates whose numbers, units, negation or names differ.
    ``store``: the exact store the answers live in. ``params``: which
    parameters are free text (None: the first parameter annotated ``str``,
    else the first parameter; every other parameter must match exactly).
    """

    def __init__(self, embedder: Callable[[str], Sequence[float]] | None = None,
                 threshold: float | None = None, *, guard: bool = True, candidates: int = 4,
                 store: str = "memory", dims: int | None = None,
                 params: Sequence[str] | None = None, max_per_partition: int = 100_000) -> None:
        if threshold is not None and not (0.0 < float(threshold) <= 1.0):
            raise PolicyError(f"SemanticCache threshold is {threshold}; it must be in (0, 1]")
        if embedder is not None and not callable(embedder):
            raise PolicyError("SemanticCache embedder must be a callable from str to floats")
        if candidates <= 0:
            raise PolicyError(f"SemanticCache candidates is {candidates}; it must be positive")
        self.embedder = embedder
        self.threshold = threshold
        self.guard = guard
        self.candidates = candidates
        self.store = store
        self.params = list(params) if params is not None else None
        self.max_per_partition = max_per_partition
        self._dims = dims

    def dims(self) -> int:
        """The embedder's vector size (asks it once when not given)."""
        if self.embedder is None:
            return 0
        if self._dims is None:
            self._dims = len(list(self.embedder("dimension probe")))
        return self._dims

    def open(self, name: str) -> None:
        # Nothing to open: a semantic cache is a policy over `store`.
        pass
