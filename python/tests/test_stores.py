"""Stores from Python against real servers: Redis (coalescing across
processes, outages), PostgreSQL, SQLite; and cache_manager."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from toolops import (PostgresCache, PolicyError, RedisCache, SQLiteCache, StoreError,
                     cache_manager, readonly)

WORKER = textwrap.dedent("""
    import asyncio, os, sys, time
    from toolops import RedisCache, cache_manager, readonly

    url, log, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cache_manager.register("redis", RedisCache(url=url))

    @readonly(cache_backend="redis", cache_ttl=60)
    async def slow(q: str) -> str:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {q}\\n")
        await asyncio.sleep(0.3)
        return "answer:" + q

    async def main():
        while time.time() < start_at:
            await asyncio.sleep(0.001)
        results = await asyncio.gather(*[slow("the question") for _ in range(200)])
        assert all(r == "answer:the question" for r in results), results[:3]
        print(slow.stats()["remote_coalesced"], slow.stats()["shared_hits"])

    asyncio.run(main())
""")


def test_eight_processes_with_a_redis_store_make_one_upstream_call(redis_server, tmp_path):
    redis_server.command("FLUSHALL")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    log = tmp_path / "calls.log"
    log.write_text("")
    start_at = time.time() + 3.0  # Every process has imported and connected by then.
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, str(script), redis_server.url, str(log),
                               str(start_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(8)]
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    lines = log.read_text().splitlines()
    print(f"\n8 processes x 200 concurrent tasks, one argument, Redis store: "
          f"{len(lines)} upstream call(s)")
    assert len(lines) == 1


def test_redis_store_shares_entries_and_an_outage_never_fails_a_call(redis_server):
    redis_server.command("FLUSHALL")
    cache_manager.register("redis-outage", RedisCache(url=redis_server.url))
    calls = []

    @readonly(cache_backend="redis-outage", cache_ttl=60)
    def f(q: str) -> str:
        calls.append(q)
        return q.upper()

    assert f("a") == "A"
    assert f.invalidate("a") is True  # Removed from both tiers.
    assert f("a") == "A"
    assert len(calls) == 2
    keys = redis_server.command("KEYS", "*")
    assert keys and "a" not in keys.split()  # Digests, never raw arguments.

    redis_server.stop()
    try:
        results = [f(f"k{i}") for i in range(50)]
        assert results == [f"K{i}" for i in range(50)]
    finally:
        redis_server.start()


def test_unreachable_redis_fails_at_register_with_a_clear_error():
    from conftest import free_port

    with pytest.raises(StoreError, match="could not be opened"):
        cache_manager.register("redis-nowhere", RedisCache(port=free_port()))


def test_postgres_store_is_durable_across_store_objects(postgres_server):
    cache_manager.register("pg", PostgresCache(postgres_server.dsn))
    calls = []

    @readonly(cache_backend="pg", cache_ttl=60, name="pg-tool")
    def f(q: str) -> str:
        calls.append(q)
        return "pg:" + q

    assert f("x") == "pg:x"
    # A new process would open a new store: so does re-registering it, and a
    # new wrap of the same tool (empty memory layer) finds the row.
    cache_manager.register("pg", PostgresCache(postgres_server.dsn))
    asyncio.run(cache_manager.clear("memory"))

    @readonly(cache_backend="pg", cache_ttl=60, name="pg-tool")
    def g(q: str) -> str:
        calls.append(q)
        return "other"

    assert g("x") == "pg:x"
    assert calls == ["x"]


def test_sqlite_file_store_holds_digests_and_data(tmp_path):
    path = tmp_path / "cache.db"
    cache_manager.register("sqlite", SQLiteCache(str(path)))

    @readonly(cache_backend="sqlite", sensitive_params=["token"], name="sqlite-tool")
    def f(q: str, token: str) -> dict:
        return {"q": q}

    assert f("needle-query", "secret-token-123") == {"q": "needle-query"}
    raw = path.read_bytes()
    for suffix in ("-wal",):
        if os.path.exists(str(path) + suffix):
            raw += open(str(path) + suffix, "rb").read()
    assert b"secret-token-123" not in raw
    assert b"needle-query" not in raw.replace(b'{"q":"needle-query"}', b"")
    with sqlite3.connect(path) as db:
        assert db.execute("select count(*) from sqlite_master").fetchone()[0] >= 1


def test_cache_manager_raw_entries_tags_and_stats():
    async def main():
        await cache_manager.set("memory", "user:1", {"name": "Ada"}, ttl=60, tags=["users"])
        await cache_manager.set("memory", "user:2", {"name": "Bob"}, ttl=60, tags=["users"])
        assert await cache_manager.get("memory", "user:1") == {"name": "Ada"}
        assert await cache_manager.delete("memory", "user:1") is True
        assert await cache_manager.get("memory", "user:1") is None
        assert await cache_manager.invalidate("memory", tags=["users"]) == 1
        assert await cache_manager.get("memory", "user:2") is None

        calls = []

        @readonly(cache_tags=["weather"], name="tagged-tool")
        def forecast(city: str) -> str:
            calls.append(city)
            return city

        forecast("Paris"), forecast("Lyon")
        assert await cache_manager.invalidate("memory", tags=["weather"]) == 2
        forecast("Paris")
        assert calls == ["Paris", "Lyon", "Paris"]
        stats = await cache_manager.stats()
        assert stats["stores"]["memory"]["entries"] >= 1
        assert stats["tools"]["tagged-tool"]["calls"] == 3

    asyncio.run(main())


def test_per_call_tags_from_a_function():
    calls = []

    @readonly(cache_tags=lambda args: [f"city:{args['city']}"], name="per-call-tags")
    def forecast(city: str, day: str = "today") -> str:
        calls.append(city)
        return city

    forecast("Paris"), forecast("Lyon")
    removed = asyncio.run(cache_manager.invalidate("memory", tags=["city:Paris"]))
    assert removed == 1
    forecast("Paris"), forecast("Lyon")
    assert calls == ["Paris", "Lyon", "Paris"]


def test_per_call_tags_reach_a_redis_store_and_the_command_invalidates_them(redis_server,
                                                                           tmp_path):
    redis_server.command("FLUSHALL")
    cache_manager.register("redis-tags", RedisCache(url=redis_server.url))
    calls = []

    @readonly(cache_backend="redis-tags", cache_ttl=600,
              cache_tags=lambda args: [f"city:{args['city']}"], name="redis-per-call-tags")
    def forecast(city: str) -> str:
        calls.append(city)
        return city

    forecast("Paris"), forecast("Lyon")
    # The tags are recorded off the caller's thread: wait for both records.
    deadline = time.monotonic() + 20
    while len([k for k in redis_server.command("KEYS", "*").split() if k.endswith(":tagged")]) < 2:
        assert time.monotonic() < deadline, redis_server.command("KEYS", "*")
        time.sleep(0.02)
    config = tmp_path / "toolops.toml"
    config.write_text(f'[stores.shared]\ntype = "redis"\nurl = "{redis_server.url}"\n')
    out = subprocess.run([sys.executable, "-m", "toolops.cli", "invalidate", "--config",
                          str(config), "--tag", "city:Paris"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "shared: removed 1 entry" in out.stdout
    # The shared entry is gone: a process without Paris in memory calls upstream again.
    program = textwrap.dedent(f"""
        from toolops import RedisCache, cache_manager, readonly
        cache_manager.register("redis-tags", RedisCache(url="{redis_server.url}"))
        calls = []
        @readonly(cache_backend="redis-tags", cache_ttl=600, name="redis-per-call-tags")
        def forecast(city: str) -> str:
            calls.append(city)
            return city
        forecast("Paris"), forecast("Lyon")
        print(calls)
    """)
    other = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                           timeout=60)
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "['Paris']"


def test_register_refuses_what_is_not_a_store():
    with pytest.raises(PolicyError, match="needs a toolops.cache store"):
        cache_manager.register("x", object())


def test_toolops_command_is_installed_and_answers():
    out = subprocess.run([sys.executable, "-m", "toolops.cli", "--version"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
